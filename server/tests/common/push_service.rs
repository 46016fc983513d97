//! A push service on loopback for the server's push tests: it records every push it
//! receives and answers from a script, or hangs on a request, as a push service stalled
//! mid-send would.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Accept the request and never answer (the sender is killed mid-send).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// `None` while (or because) the service hangs on it.
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

struct Recorder {
    script: VecDeque<Answer>,
    /// The answer once the script is used up.
    otherwise: Answer,
    received: Vec<Received>,
}

/// Answers 201 unless told otherwise; stops when dropped.
pub struct PushService {
    addr: SocketAddr,
    state: Arc<Mutex<Recorder>>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<Mutex<Recorder>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let (index, answer) = {
        let mut s = state.lock().unwrap();
        let answer = s.script.pop_front().unwrap_or(s.otherwise);
        s.received.push(Received {
            path: format!("/push/{name}"),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect(),
            body: body.to_vec(),
            answered: None,
        });
        (s.received.len() - 1, answer)
    };
    match answer {
        Answer::Hang => std::future::pending().await,
        Answer::Status(code) => {
            state.lock().unwrap().received[index].answered = Some(code);
            let mut h = HeaderMap::new();
            if code == 201 {
                h.insert("location", format!("/m/{index}").parse().unwrap());
            }
            (StatusCode::from_u16(code).unwrap(), h)
        }
    }
}

impl PushService {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(Recorder {
            script: VecDeque::new(),
            otherwise: Answer::Status(201),
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/push/{name}", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/push/{name}", self.origin())
    }

    /// The next answers, in order.
    pub fn script(&self, answers: &[Answer]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(answers.iter().copied());
    }

    /// The answer to every request once the script is used up.
    pub fn answer_from_now_on(&self, answer: Answer) {
        self.state.lock().unwrap().otherwise = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.task.abort();
    }
}
