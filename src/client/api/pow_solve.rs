//! Solving the server's proof-of-work challenge for a write (see [`super::SignalingClient`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::{error_from, ApiError, SignalingClient, MAX_POW_DIFFICULTY};
use crate::proto::pow;

/// The proof-of-work challenge advertised in `/v1/info`.
#[derive(Debug, Deserialize)]
struct PowChallenge {
    difficulty: u8,
    nonce: String,
}

impl SignalingClient {
    /// Fetch the current challenge and solve it for `body`; returns the stamp header value.
    pub(super) async fn solve_pow(&self, body: &[u8]) -> Result<HeaderValue, ApiError> {
        let resp = self
            .http
            .request(Method::GET, "/v1/info", &[], None)
            .await?;
        if resp.status != StatusCode::OK {
            return Err(error_from(&resp));
        }
        #[derive(Deserialize)]
        struct Info {
            pow: PowChallenge,
        }
        let info: Info = serde_json::from_slice(&resp.body).map_err(|_| ApiError::PowChallenge)?;
        let nonce = hex::decode(&info.pow.nonce).map_err(|_| ApiError::PowChallenge)?;
        let difficulty = info.pow.difficulty;
        if difficulty > MAX_POW_DIFFICULTY {
            return Err(ApiError::PowTooHard { difficulty });
        }
        let digest = pow::body_digest(body);
        let cancel = Arc::new(AtomicBool::new(false));
        let _stop = CancelOnDrop(Arc::clone(&cancel));
        let mut work = tokio::task::spawn_blocking(move || {
            let mut start = rand::random::<u64>();
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return None;
                }
                if let Some(s) = pow::solve(&nonce, &digest, difficulty, start, 1 << 16) {
                    return Some(s);
                }
                start = start.wrapping_add(1 << 16);
            }
        });
        let slow = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(slow);
        let mut noted = false;
        let stamp = loop {
            tokio::select! {
                res = &mut work => break res.ok().flatten(),
                () = &mut slow, if !noted => {
                    noted = true;
                    if let Some(p) = &self.progress {
                        p(&format!("solving the server's proof-of-work (difficulty {difficulty})…"));
                    }
                }
            }
        };
        let stamp = stamp.ok_or(ApiError::PowChallenge)?;
        if noted {
            if let Some(p) = &self.progress {
                p("proof-of-work solved");
            }
        }
        HeaderValue::from_str(&hex::encode(stamp)).map_err(|_| ApiError::PowChallenge)
    }
}

/// Stops a proof-of-work search when the request is dropped (timeout, Ctrl-C).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
