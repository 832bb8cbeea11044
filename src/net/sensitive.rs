//! [`Sensitive<T>`]: a value that prints as `[scrubbed]` in logs and error messages.

use std::fmt;

/// A value (a dial target, an onion name, a peer address) that must not appear in logs or
/// error messages by accident.
///
/// `Display` and `Debug` print `[scrubbed]`. The value is reached only through the
/// explicitly named [`Sensitive::as_inner`], [`Sensitive::into_inner`] and
/// [`Sensitive::display_unredacted`], so every place that reveals it is visible in review.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wrap a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The wrapped value.
    pub fn as_inner(&self) -> &T {
        &self.0
    }

    /// Unwrap the value.
    pub fn into_inner(self) -> T {
        self.0
    }

    /// Something that displays the value itself (for the few places that must show it, such
    /// as the user's own terminal when they asked for it).
    pub fn display_unredacted(&self) -> impl fmt::Display + '_
    where
        T: fmt::Display,
    {
        &self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[scrubbed]")
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[scrubbed]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_unless_unwrapped() {
        let s = Sensitive::new("secret.onion:80".to_owned());
        assert_eq!(s.to_string(), "[scrubbed]");
        assert_eq!(format!("{s:?}"), "[scrubbed]");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    [scrubbed],\n)");
        assert_eq!(s.display_unredacted().to_string(), "secret.onion:80");
        assert_eq!(s.as_inner(), "secret.onion:80");
        assert_eq!(s.into_inner(), "secret.onion:80");
    }
}
