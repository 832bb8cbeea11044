//! Test helpers: a one-shot canned HTTP server on 127.0.0.1:0.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serve one connection: read one request (head + `Content-Length` body), answer with
/// `response` verbatim, close. Returns the base URL and a handle yielding the request bytes.
pub async fn serve_once(response: Vec<u8>) -> (String, JoinHandle<Vec<u8>>) {
    serve_many(vec![response]).await
}

/// Like [`serve_once`], answering `responses.len()` connections in order; the handle yields
/// the requests concatenated.
pub async fn serve_many(responses: Vec<Vec<u8>>) -> (String, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let mut all = Vec::new();
        for response in responses {
            let (mut s, _) = listener.accept().await.unwrap();
            all.extend(read_request(&mut s).await);
            s.write_all(&response).await.unwrap();
            s.shutdown().await.unwrap();
        }
        all
    });
    (url, handle)
}

async fn read_request(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
    }
}

/// A JSON response with the given status line and body.
pub fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A port on 127.0.0.1 that nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
