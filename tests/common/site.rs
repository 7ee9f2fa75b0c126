//! A stand-in for the department's web site in integration tests: a tiny
//! HTTP/1.1 server on 127.0.0.1 (an ephemeral port), written by hand on
//! tokio. It reads each request's head, answers one page with a
//! Content-Length and `Connection: close`, and closes the connection. Tests
//! set pages and failure statuses per path while it runs, count the requests
//! per path, wait for them without sleeping, and see the User-Agent each
//! request sent. Helpers build pages in the site's 2023 layout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The longest request head the server reads; a longer one gets a 431.
const MAX_HEAD: usize = 64 * 1024;

/// A page the site serves.
#[derive(Clone)]
struct Page {
    content_type: String,
    body: Vec<u8>,
}

/// One request the site received.
#[derive(Clone)]
struct Request {
    path: String,
    user_agent: Option<String>,
}

#[derive(Default)]
struct State {
    pages: HashMap<String, Page>,
    statuses: HashMap<String, u16>,
    requests: Vec<Request>,
}

/// The fake web site. Dropping it stops the server and every connection.
pub struct Site {
    state: Arc<Mutex<State>>,
    /// The number of requests received so far; changes wake waiters.
    received: watch::Receiver<usize>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Site {
    /// Starts serving on 127.0.0.1 at a free port, with no pages yet (every
    /// path answers 404).
    pub async fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake site to 127.0.0.1");
        let addr = listener.local_addr().expect("the fake site's address");
        let state = Arc::new(Mutex::new(State::default()));
        let (count, received) = watch::channel(0usize);
        let task = tokio::spawn(serve(listener, state.clone(), Arc::new(count)));
        Site {
            state,
            received,
            addr,
            task,
        }
    }

    /// The full URL of `path` on this site: `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `body` with `content_type` at `path` (exactly as requested,
    /// query string included), replacing any page there.
    pub fn set_page(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) {
        self.lock().pages.insert(
            path.to_owned(),
            Page {
                content_type: content_type.to_owned(),
                body: body.into(),
            },
        );
    }

    /// Serves `html` as `text/html; charset=utf-8` at `path`.
    pub fn set_html(&self, path: &str, html: &str) {
        self.set_page(path, "text/html; charset=utf-8", html);
    }

    /// Answers `status` (with a small HTML body) at `path` instead of the
    /// page, until [`Site::clear_status`].
    pub fn set_status(&self, path: &str, status: u16) {
        self.lock().statuses.insert(path.to_owned(), status);
    }

    /// Serves the page at `path` again (or 404 if there is none).
    pub fn clear_status(&self, path: &str) {
        self.lock().statuses.remove(path);
    }

    /// How many requests for `path` (exactly as requested) arrived so far.
    pub fn requests(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|request| request.path == path)
            .count()
    }

    /// Waits until at least `n` requests for `path` have arrived, at most
    /// `timeout`; woken by each request, never polling.
    pub async fn wait_for_requests(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut received = self.received.clone();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                received.borrow_and_update();
                if self.requests(path) >= n {
                    return;
                }
                if received.changed().await.is_err() {
                    // The server is gone: no more requests will come.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.map_err(|_| {
            format!(
                "{} request(s) for {path} within {timeout:?}, wanted {n}; all requests: {:?}",
                self.requests(path),
                self.paths()
            )
        })
    }

    /// The User-Agent header of each request, in order (empty for a request
    /// without one).
    pub fn user_agents(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|request| request.user_agent.clone().unwrap_or_default())
            .collect()
    }

    /// The path of each request, in order.
    pub fn paths(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|request| request.path.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// The state, even if a panicking test poisoned the lock.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Accepts connections until aborted; the connections' tasks live in a
/// JoinSet, so aborting this task aborts them too.
async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, count: Arc<watch::Sender<usize>>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else {
            continue;
        };
        connections.spawn(answer(stream, state.clone(), count.clone()));
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, state: Arc<Mutex<State>>, count: Arc<watch::Sender<usize>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(end);
        }
        if head.len() > MAX_HEAD {
            break None;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let Some(end) = end else {
        let _ = respond(
            &mut stream,
            431,
            "text/html; charset=utf-8",
            &status_body(431),
            true,
        )
        .await;
        return;
    };
    let head = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let Some(path) = request_line.next().map(str::to_owned) else {
        let _ = respond(
            &mut stream,
            400,
            "text/html; charset=utf-8",
            &status_body(400),
            true,
        )
        .await;
        return;
    };
    let user_agent = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("user-agent")
            .then(|| value.trim().to_owned())
    });

    let (status, content_type, body) = {
        let mut state = lock(&state);
        state.requests.push(Request {
            path: path.clone(),
            user_agent,
        });
        let status = state.statuses.get(&path).copied();
        match (status, state.pages.get(&path)) {
            (Some(status), _) => (
                status,
                "text/html; charset=utf-8".to_owned(),
                status_body(status),
            ),
            (None, Some(page)) => (200, page.content_type.clone(), page.body.clone()),
            (None, None) => (404, "text/html; charset=utf-8".to_owned(), status_body(404)),
        }
    };
    count.send_modify(|count| *count += 1);
    let with_body = method != "HEAD";
    let _ = respond(&mut stream, status, &content_type, &body, with_body).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let mut answer = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if with_body {
        answer.extend_from_slice(body);
    }
    stream.write_all(&answer).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// The small HTML page sent with a status set by [`Site::set_status`] or a
/// 404.
fn status_body(status: u16) -> Vec<u8> {
    format!(
        "<html><head><title>{status}</title></head><body><h1>{status} {}</h1></body></html>",
        reason(status)
    )
    .into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// `text` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// A list page in the site's 2023 layout: one
/// `<div class="ann-list"><ul><li><a href=..>title</a></li>...</ul></div>`,
/// items in the given order (the site lists the newest first). Hrefs and
/// titles are escaped.
pub fn list_page(items: &[(&str, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(href, title)| {
            format!(
                "<li><a href=\"{}\">{}</a></li>",
                escape(href),
                escape(title)
            )
        })
        .collect();
    format!("<html><body><div class=\"ann-list\"><ul>{items}</ul></div></body></html>")
}

/// An announcement page in the site's 2023 layout: the paragraphs, escaped,
/// as `<p>` elements in `<div class="page-about">`.
pub fn announcement_page(paragraphs: &[&str]) -> String {
    let paragraphs: String = paragraphs
        .iter()
        .map(|paragraph| format!("<p>{}</p>", escape(paragraph)))
        .collect();
    format!("<html><body><div class=\"page-about\">{paragraphs}</div></body></html>")
}
