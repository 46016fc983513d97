//! Setting up our server through its CLI and REST API: an organisation, a volunteer,
//! devices and cases.

use std::path::Path;

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, stream};
use lotse_protocol::DocumentId;
use lotse_testkit::{TestDb, process};
use serde_json::{Value, json};

pub const PASSWORD: &str = "bench-password-2026";
pub const EMAIL: &str = "bench@lotse.invalid";

/// `lotse-server create-coordinator` on the database (before the server starts).
pub fn create_coordinator(bin: &Path, db: &TestDb) -> Result<()> {
    process::create_coordinator(bin, &db.url, "Bench", EMAIL, PASSWORD)
        .context("running create-coordinator")
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Api {
    pub async fn login(base: String) -> Result<Self> {
        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = v["token"].as_str().context("login token")?.to_owned();
        Ok(Self { base, http, token })
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    pub async fn volunteer(&self, name: &str) -> Result<String> {
        let v = self
            .post(
                "/api/v1/volunteers",
                json!({"display_name": name, "languages": ["fa", "de"], "topics": ["behoerden"]}),
            )
            .await?;
        Ok(v["id"].as_str().context("volunteer id")?.to_owned())
    }

    pub async fn enrollment_code(&self, volunteer: &str) -> Result<String> {
        let v = self
            .post(
                &format!("/api/v1/volunteers/{volunteer}/enrollment-codes"),
                json!({}),
            )
            .await?;
        Ok(v["code"].as_str().context("code")?.to_owned())
    }

    /// Enrolls a device for `volunteer`; its token.
    pub async fn device(&self, volunteer: &str, name: &str) -> Result<String> {
        let code = self.enrollment_code(volunteer).await?;
        let v: Value = self
            .http
            .post(format!("{}/api/v1/devices/enroll", self.base))
            .json(&json!({"code": code, "device_name": name}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(v["token"].as_str().context("device token")?.to_owned())
    }

    /// Creates `n` cases shared with `volunteer` (8 requests in flight).
    pub async fn cases(&self, volunteer: &str, n: usize) -> Result<Vec<DocumentId>> {
        let results: Vec<Result<DocumentId>> = stream::iter(0..n)
            .map(|i| async move {
                let v = self
                    .post(
                        "/api/v1/cases",
                        json!({"label": format!("F-{i:05}"), "topic": "behoerden",
                               "languages": ["fa"], "volunteer_ids": [volunteer]}),
                    )
                    .await?;
                let id: DocumentId = v["id"]
                    .as_str()
                    .context("case id")?
                    .parse()
                    .map_err(|e| anyhow::anyhow!("case id: {e:?}"))?;
                Ok(id)
            })
            .buffered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }
}
