//! A browser without JavaScript for the dashboard's tests: keeps cookies, never follows
//! redirects, sends forms with their CSRF token.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use lotse_testkit::TestServer;
use reqwest::header;

/// A browser without JavaScript: keeps cookies, never follows redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: HashMap<String, String>,
    pub accept_language: String,
}

pub struct Page {
    pub status: u16,
    pub location: String,
    pub headers: header::HeaderMap,
    pub body: String,
}

impl Page {
    /// Asserts that a form came back refused (422) showing each of `shown`: messages,
    /// and the values typed.
    pub fn assert_refused(&self, shown: &[&str]) {
        assert_eq!(self.status, 422, "{}", self.body);
        for text in shown {
            assert!(self.body.contains(text), "{text}: {}", self.body);
        }
    }
}

impl Browser {
    pub fn new(s: &TestServer) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookies: HashMap::new(),
            accept_language: "de-DE,de;q=0.9".into(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let res = req
            .header(header::COOKIE, self.cookie_header())
            .header(header::ACCEPT_LANGUAGE, &self.accept_language)
            .send()
            .await
            .unwrap();
        for v in res.headers().get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let location = headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = res.text().await.unwrap();
        Page {
            status,
            location,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// Asks for `path` until the page satisfies `done` (what a page that refreshes on
    /// live events ends up showing), or fails after 20 s with the last page.
    pub async fn get_until(
        &mut self,
        path: &str,
        what: &str,
        done: impl Fn(&Page) -> bool,
    ) -> Page {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.get(path).await;
            if done(&page) {
                return page;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what} on {path}: {} {}",
                page.status,
                page.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/dashboard/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = csrf_of(&form.body);
        self.post(
            "/dashboard/login",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", "/dashboard"),
            ],
        )
        .await
    }

    /// Whether the dashboard sends this browser to the login page, as it does without a
    /// session.
    pub async fn is_sent_to_login(&mut self) -> bool {
        self.get("/dashboard")
            .await
            .location
            .starts_with("/dashboard/login")
    }

    /// Sends a form of this session: `fields` and the CSRF token, as the page's form has
    /// them.
    pub async fn submit(&mut self, path: &str, csrf: &str, fields: &[(&str, &str)]) -> Page {
        let mut form = vec![("csrf", csrf)];
        form.extend_from_slice(fields);
        self.post(path, &form).await
    }

    /// The CSRF token of this session, read from a page's forms.
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/dashboard").await;
        assert_eq!(page.status, 200, "{}", page.body);
        csrf_of(&page.body)
    }
}

/// The first CSRF token of a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Reads SSE frames until `event: <name>` arrives.
pub async fn wait_for_event(res: &mut reqwest::Response, name: &str, deadline: Duration) {
    let until = tokio::time::Instant::now() + deadline;
    let mut seen = String::new();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no `{name}` event within {deadline:?}; got {seen:?}"
        );
        match tokio::time::timeout(left, res.chunk()).await {
            Ok(Ok(Some(bytes))) => {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if seen.contains(&format!("event: {name}\n")) {
                    return;
                }
            }
            Ok(Ok(None)) => panic!("stream ended before `{name}`; got {seen:?}"),
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => {}
        }
    }
}

pub async fn events(b: &Browser) -> reqwest::Response {
    events_after(b, None).await
}

/// The event stream, as a browser reconnecting with `Last-Event-ID` opens it.
pub async fn events_after(b: &Browser, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = b
        .http
        .get(format!("{}/dashboard/events", b.base))
        .header(header::COOKIE, b.cookie_header());
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    res
}
