//! The HTTP side: a listener on `127.0.0.1:0`, one task per connection
//! served by hyper's HTTP/1 (keep-alive on), routing `/bot<TOKEN>/<method>`
//! and the downloads `/file/bot<TOKEN>/<file_path>` (recorded as method
//! `file`), reading the body (up to [`MAX_BODY`]; chunked or not),
//! recording the request, applying a scripted fault, and writing the
//! answer. A "dropped connection" fault is an `Err` from the service, on
//! which hyper closes the connection without a response.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::faults::{FaultKind, echo_path_body, echo_path_page, html_page};
use crate::methods;
use crate::model::Outcome;
use crate::params::{Params, percent_decode};
use crate::reply::ApiError;
use crate::state::Shared;

/// Largest request body accepted: Telegram's 50 MB upload limit plus room
/// for the other form fields and the multipart framing. A larger body gets
/// 413 `Request Entity Too Large`.
const MAX_BODY: usize = 52 * 1024 * 1024;

/// How much of a too-large body is still read (and thrown away) before the
/// 413, so the client, still sending, reads the answer instead of a reset
/// connection. Beyond it the connection is closed.
const MAX_DRAIN: u64 = 256 * 1024 * 1024;

/// The method name downloads are recorded under.
const DOWNLOAD_METHOD: &str = "file";

/// The service's error: close the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by a scripted fault")
    }
}

impl std::error::Error for DropConnection {}

type HttpResponse = Response<Full<Bytes>>;

/// Binds `127.0.0.1:0` and serves until `shutdown` turns true (or its sender
/// is dropped). Returns the bound address and a receiver that turns true once
/// the listener is closed.
pub(crate) async fn start(
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    addr: SocketAddr,
) -> io::Result<(SocketAddr, watch::Receiver<bool>)> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (closed_tx, closed_rx) = watch::channel(false);
    tokio::spawn(async move {
        accept_loop(listener, shared, shutdown).await;
        closed_tx.send_replace(true);
    });
    Ok((addr, closed_rx))
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Err means every handle is gone: stop as well.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accepts connections until shutdown; the listener is closed on return.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, Arc::clone(&shared), shutdown.clone()));
                }
                Err(_) => {
                    // Out of file descriptors or similar: back off briefly
                    // instead of spinning on the error.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { handle(shared, req).await }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None::<Duration>)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = stopped(&mut shutdown) => {}
    }
}

/// Records the end of a request exactly once; if the request future is
/// dropped first (the client went away), records it as abandoned.
struct Finish {
    shared: Arc<Shared>,
    seq: u64,
    token: String,
    method: String,
    done: bool,
}

impl Finish {
    fn finish(&mut self, outcome: Outcome) {
        self.done = true;
        self.shared
            .finish(self.seq, &self.token, &self.method, outcome);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .finish(self.seq, &self.token, &self.method, Outcome::Abandoned);
        }
    }
}

/// What a request asks for.
enum Target {
    /// A Bot API method (the method name is in the request's `method`).
    Method,
    /// A download of this file path.
    Download(String),
}

/// Splits `/file/bot<TOKEN>/<file_path>` into the token and the file path,
/// both percent-decoded (teloxide sends the path's `/` as `%2F`).
fn file_route(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/file/bot")?;
    let (token, file_path) = rest.split_once('/')?;
    if token.is_empty() {
        return None;
    }
    Some((percent_decode(token), percent_decode(file_path)))
}

/// Why a body could not be read.
enum BodyError {
    /// Larger than [`MAX_BODY`].
    TooLarge,
    /// The client went away or sent a malformed body.
    Broken,
}

/// Reads a request body of at most [`MAX_BODY`] bytes into one buffer (a
/// single copy). When it is larger, reads on up to [`MAX_DRAIN`] bytes,
/// throwing them away, before answering `TooLarge`.
async fn read_body(mut body: Incoming, content_length: Option<u64>) -> Result<Bytes, BodyError> {
    let mut too_large = content_length.is_some_and(|n| n > MAX_BODY as u64);
    let mut buf = BytesMut::with_capacity(if too_large {
        0
    } else {
        content_length
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    });
    let mut drained: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(if too_large {
                BodyError::TooLarge
            } else {
                BodyError::Broken
            });
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if !too_large && buf.len() + data.len() > MAX_BODY {
            too_large = true;
            buf = BytesMut::new();
        }
        if too_large {
            drained += data.len() as u64;
            if drained > MAX_DRAIN {
                break;
            }
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if too_large {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

/// Splits `/bot<TOKEN>/<method>` into the token and the lowercased method.
fn route(path: &str) -> Option<(&str, String)> {
    let rest = path.strip_prefix("/bot")?;
    let (token, method) = rest.split_once('/')?;
    if token.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((token, method.to_ascii_lowercase()))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (token, method, target) = if let Some((t, path)) = file_route(parts.uri.path()) {
        (t, DOWNLOAD_METHOD.to_owned(), Target::Download(path))
    } else {
        match route(parts.uri.path()) {
            Some((t, m)) => (t.to_owned(), m, Target::Method),
            None => (String::new(), String::new(), Target::Method),
        }
    };
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = match read_body(body, content_length).await {
        Ok(body) => body,
        Err(e) => {
            // Too large, or the client went away mid-body: record it anyway.
            let (seq, _) = shared.arrive(&token, &method, serde_json::Value::Null, arrived);
            let err = match e {
                BodyError::TooLarge => ApiError::new(413, "Request Entity Too Large"),
                BodyError::Broken => ApiError::bad_request("can't read the request body"),
            };
            shared.finish(seq, &token, &method, Outcome::Status(err.code));
            return Ok(json_response(&err));
        }
    };
    let parsed = match &target {
        Target::Method => Params::parse(parts.uri.query(), content_type.as_deref(), &body),
        Target::Download(path) => crate::params::Parsed {
            recorded: serde_json::json!({ "file_path": path }),
            params: Ok(Params::default()),
        },
    };
    let (seq, fault) = shared.arrive(&token, &method, parsed.recorded, arrived);
    let mut finish = Finish {
        shared: Arc::clone(&shared),
        seq,
        token,
        method,
        done: false,
    };
    if finish.token.is_empty() {
        let err = ApiError::not_found();
        finish.finish(Outcome::Status(err.code));
        return Ok(json_response(&err));
    }

    if let Some(fault) = fault {
        if let Some(d) = fault.delay {
            tokio::time::sleep(d).await;
        }
        return match fault.kind {
            FaultKind::DropConnection => {
                finish.finish(Outcome::Dropped);
                Err(DropConnection)
            }
            FaultKind::HtmlPage => {
                finish.finish(Outcome::Status(fault.status));
                Ok(response(
                    fault.status,
                    "text/html",
                    html_page(fault.status).into(),
                ))
            }
            FaultKind::Ok => {
                finish.finish(Outcome::Status(200));
                let body = format!("{{\"ok\":true,\"result\":{}}}", fault.description);
                Ok(response(200, "application/json", body.into()))
            }
            FaultKind::EchoPath => {
                finish.finish(Outcome::Status(fault.status));
                let body = echo_path_body(fault.status, &fault.description, parts.uri.path());
                Ok(response(fault.status, "application/json", body.into()))
            }
            FaultKind::EchoPathPage => {
                finish.finish(Outcome::Status(fault.status));
                let body = echo_path_page(fault.status, parts.uri.path());
                Ok(response(fault.status, "text/html", body.into()))
            }
            FaultKind::JsonError => {
                let err = ApiError {
                    code: fault.status,
                    description: fault.description.into(),
                    parameters: fault.parameters,
                };
                finish.finish(Outcome::Status(err.code));
                Ok(json_response(&err))
            }
        };
    }

    if let Target::Download(path) = &target {
        let resp = download(&shared, &finish.token, path);
        finish.finish(Outcome::Status(resp.status().as_u16()));
        return Ok(resp);
    }

    let result = methods::dispatch(&shared, &finish.token, &finish.method, parsed.params).await;
    let (status, body) = match result {
        Ok(success) => (200, success.body()),
        Err(err) => (err.code, err.body()),
    };
    finish.finish(Outcome::Status(status));
    Ok(response(status, "application/json", body.into()))
}

/// Answers a download: the stored bytes, 401 for an unknown token, 404
/// for an unknown path (or a file sent by URL, which has no bytes).
fn download(shared: &Shared, token: &str, path: &str) -> HttpResponse {
    let file = {
        let st = shared.lock();
        if !st.bots.contains_key(token) {
            return json_response(&ApiError::unauthorized());
        }
        st.files.by_path(path).filter(|f| f.url.is_none()).cloned()
    };
    let Some(file) = file else {
        return json_response(&ApiError::not_found());
    };
    let mut resp = response(200, "application/octet-stream", file.bytes.clone());
    if let Ok(v) = HeaderValue::from_str(&file.content_type()) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn json_response(err: &ApiError) -> HttpResponse {
    response(err.code, "application/json", err.body().into())
}

fn response(status: u16, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::{file_route, route};

    #[test]
    fn routes() {
        assert_eq!(
            route("/bot1:abc/GetMe"),
            Some(("1:abc", "getme".to_owned()))
        );
        assert_eq!(route("/bot1:abc/"), None);
        assert_eq!(route("/foo"), None);
        assert_eq!(route("/bot/getMe"), None);
    }

    #[test]
    fn file_routes_decode() {
        let ok = |t: &str, p: &str| Some((t.to_owned(), p.to_owned()));
        assert_eq!(
            file_route("/file/bot1:abc/photos/file_1.jpg"),
            ok("1:abc", "photos/file_1.jpg")
        );
        assert_eq!(
            file_route("/file/bot1%3Aabc/photos%2Ffile_1.jpg"),
            ok("1:abc", "photos/file_1.jpg")
        );
        assert_eq!(file_route("/file/bot1:abc/"), ok("1:abc", ""));
        assert_eq!(file_route("/file/bot/x"), None);
        assert_eq!(file_route("/file/bot1:abc"), None);
    }
}
