//! [`Quota`]: a typed rate such as `"60r/s"` or `"10r/m"`, written as a string in the config.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The period of a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    /// `s`.
    Second,
    /// `m`.
    Minute,
    /// `h`.
    Hour,
}

impl Per {
    /// The period's length.
    #[must_use]
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        })
    }

    fn suffix(self) -> char {
        match self {
            Per::Second => 's',
            Per::Minute => 'm',
            Per::Hour => 'h',
        }
    }
}

/// A request rate written `<count>r/<s|m|h>`.
///
/// `"60r/s"` allows 60 requests per second: a client may send a burst of up to 60 at once,
/// and after that one more every 1/60 s (the bucket refills continuously). `"10r/m"` allows a
/// burst of 10 and then one request every 6 seconds. The real sustained rate is always
/// `count / period`; the burst is `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quota {
    count: NonZeroU32,
    per: Per,
}

/// Why a quota string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quota {input:?}: expected <count>r/<s|m|h> with count ≥ 1, e.g. \"60r/s\" or \"10r/m\"")]
pub struct QuotaError {
    input: String,
}

impl Quota {
    /// `count` requests per `per`.
    #[must_use]
    pub fn new(count: NonZeroU32, per: Per) -> Self {
        Self { count, per }
    }

    /// Requests allowed per period (and the burst size).
    #[must_use]
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub fn per(&self) -> Per {
        self.per
    }

    /// The sustained rate in requests per second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        f64::from(self.count.get()) / self.per.duration().as_secs_f64()
    }

    /// The equivalent `governor` quota (burst = `count`, replenished evenly over the period).
    #[must_use]
    pub fn to_governor(&self) -> governor::Quota {
        match self.per {
            Per::Second => governor::Quota::per_second(self.count),
            Per::Minute => governor::Quota::per_minute(self.count),
            Per::Hour => governor::Quota::per_hour(self.count),
        }
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(s: &str) -> Result<Self, QuotaError> {
        let err = || QuotaError {
            input: s.chars().take(40).collect(),
        };
        let (count, per) = s.trim().split_once("r/").ok_or_else(err)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let count: NonZeroU32 = count.parse().map_err(|_| err())?;
        let per = match per {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            _ => return Err(err()),
        };
        Ok(Self { count, per })
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}r/{}", self.count, self.per.suffix())
    }
}

impl TryFrom<String> for Quota {
    type Error = QuotaError;
    fn try_from(s: String) -> Result<Self, QuotaError> {
        s.parse()
    }
}

impl From<Quota> for String {
    fn from(q: Quota) -> String {
        q.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let q: Quota = "60r/s".parse().unwrap();
        assert_eq!((q.count().get(), q.per()), (60, Per::Second));
        assert_eq!(q.to_string(), "60r/s");
        assert!((q.per_second() - 60.0).abs() < 1e-9);
        let q: Quota = "10r/m".parse().unwrap();
        assert!((q.per_second() - 10.0 / 60.0).abs() < 1e-9);
        assert_eq!(q.to_governor().burst_size().get(), 10);
        assert_eq!(q.to_governor().replenish_interval(), Duration::from_secs(6));
        assert_eq!(" 3r/h ".parse::<Quota>().unwrap().to_string(), "3r/h");
        for bad in [
            "",
            "0r/s",
            "r/s",
            "10/s",
            "10r/d",
            "-1r/s",
            "+1r/s",
            "1.5r/s",
            "99999999999r/s",
            "10r/S",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        #[derive(Deserialize, Serialize)]
        struct T {
            q: Quota,
        }
        let t: T = toml::from_str("q = \"5r/s\"").unwrap();
        assert_eq!(t.q.to_string(), "5r/s");
        assert_eq!(toml::to_string(&t).unwrap().trim(), "q = \"5r/s\"");
        let err = toml::from_str::<T>("q = \"fast\"")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid quota"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any string either fails cleanly or round-trips through its printed form.
        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,24}") {
            if let Ok(q) = s.parse::<Quota>() {
                prop_assert_eq!(q.to_string().parse::<Quota>().unwrap(), q);
            }
        }

        #[test]
        fn valid_quotas_round_trip(n in 1u32.., per in prop::sample::select(vec!['s', 'm', 'h'])) {
            let text = format!("{n}r/{per}");
            let q: Quota = text.parse().unwrap();
            prop_assert_eq!(q.to_string(), text);
            prop_assert_eq!(q.count().get(), n);
        }
    }
}
