//! The proof of concept's pointer lookup (`GET /lookup/{key}`, DESIGN §3.3), verified.

use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::{error_from, ApiError, SignalingClient};
use crate::proto::{PointerAnnounce, PointerError, PublicKey, Signature};

/// The `/lookup` reply (`updatedAt` is not needed).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lookup {
    public_key: String,
    manifest_infohash: String,
    seq: u64,
    signature: Option<String>,
}

impl SignalingClient {
    /// The proof-of-concept pointer record of `key`, its signature verified (our server
    /// adds `signature` to the proof of concept's reply); `None` if the server has none.
    pub async fn lookup_pointer(
        &self,
        key: &PublicKey,
    ) -> Result<Option<PointerAnnounce>, ApiError> {
        let accept = (header::ACCEPT, HeaderValue::from_static("application/json"));
        let resp = self
            .http
            .request(
                Method::GET,
                &format!("/lookup/{}", key.to_hex()),
                &[accept],
                None,
            )
            .await?;
        match resp.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(error_from(&resp)),
        }
        let invalid = |source| ApiError::InvalidPointer { key: *key, source };
        let reply: Lookup = serde_json::from_slice(&resp.body)
            .map_err(|e| invalid(PointerError::Shape(format!("bad lookup reply: {e}"))))?;
        let signature = reply
            .signature
            .ok_or_else(|| invalid(PointerError::Shape("the record has no signature".into())))?;
        let signature = Signature::from_hex_any_case(&signature).map_err(|source| {
            invalid(PointerError::Hex {
                member: "signature",
                source,
            })
        })?;
        let pointer = PointerAnnounce::from_stored(
            &reply.public_key,
            &reply.manifest_infohash,
            reply.seq,
            &signature,
        )
        .map_err(invalid)?;
        if pointer.public_key() != key {
            return Err(ApiError::WrongKey {
                requested: *key,
                got: *pointer.public_key(),
            });
        }
        Ok(Some(pointer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::http::{BaseUrl, HttpClient};
    use crate::client::testutil::{json_response, serve_once};
    use crate::net::Connector;

    const NODE_POINTER: &str = include_str!("../../../tests/vectors/node-pointer.json");

    fn client(url: &str) -> SignalingClient {
        SignalingClient::new(HttpClient::new(
            Connector::direct(),
            BaseUrl::parse(url).unwrap(),
        ))
    }

    fn node_key() -> PublicKey {
        let v: serde_json::Value = serde_json::from_str(NODE_POINTER).unwrap();
        PublicKey::from_hex(v["publicKey"].as_str().unwrap()).unwrap()
    }

    fn reply(mutate: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(NODE_POINTER).unwrap();
        v["updatedAt"] = 1.into();
        mutate(&mut v);
        json_response("200 OK", &v.to_string())
    }

    #[tokio::test]
    async fn a_signed_record_verifies() {
        let (url, req) = serve_once(reply(|_| {})).await;
        let p = client(&url)
            .lookup_pointer(&node_key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.infohash().to_hex(), "ab".repeat(20));
        let req = String::from_utf8(req.await.unwrap()).unwrap();
        assert!(
            req.starts_with(&format!("GET /lookup/{} ", node_key())),
            "{req}"
        );
    }

    #[tokio::test]
    async fn forged_unsigned_and_missing_records() {
        let (url, _) = serve_once(reply(|v| v["seq"] = 4.into())).await;
        let e = client(&url).lookup_pointer(&node_key()).await.unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::InvalidPointer {
                    source: PointerError::BadSignature,
                    ..
                }
            ),
            "{e:?}"
        );
        let (url, _) = serve_once(reply(|v| {
            v.as_object_mut().unwrap().remove("signature");
        }))
        .await;
        let e = client(&url).lookup_pointer(&node_key()).await.unwrap_err();
        assert!(format!("{e:?}").contains("no signature"), "{e:?}");
        let (url, _) = serve_once(json_response("404 Not Found", r#"{"error":"not-found"}"#)).await;
        assert!(client(&url)
            .lookup_pointer(&node_key())
            .await
            .unwrap()
            .is_none());
        let other = PublicKey::from(&ed25519_dalek::SigningKey::from_bytes(&[3; 32]));
        let (url, _) = serve_once(reply(|_| {})).await;
        let e = client(&url).lookup_pointer(&other).await.unwrap_err();
        assert!(matches!(e, ApiError::WrongKey { .. }), "{e:?}");
    }
}
