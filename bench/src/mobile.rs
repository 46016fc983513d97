//! Scenario 6, run in child processes so their RSS is mobile-core's alone: a phone
//! enrolls, syncs its cases, then adds notes offline (each durable before it returns);
//! a second process opens the store cold.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use lotse_core::{Client, Config};
use serde_json::json;

/// The bench's app key (a real app keeps its key in the Keystore/Keychain).
const KEY: [u8; 32] = [42; 32];

fn config(dir: &Path, base: &str) -> Config {
    Config {
        data_dir: dir.to_owned(),
        server_url: base.to_owned(),
        key: KEY,
        trusted_certificates_pem: None,
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn child(base: &str, code: &str, dir: &Path, notes: usize) -> Result<()> {
    let client = Client::open(config(dir, base)).await?;
    client.enroll(code, "Bench-Handy").await?;
    let t = Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(300), client.sync_now())
        .await
        .context("first sync within 300 s")??;
    let first_sync_ms = t.elapsed().as_secs_f64() * 1e3;
    let cases = client.list_cases().await?;
    let case = cases.first().context("the phone got no case")?.id;
    client.set_network_available(false);
    let mut lat = Vec::with_capacity(notes);
    for i in 0..notes {
        let t = Instant::now();
        client
            .add_note(&case, &format!("Termin beim Amt vorbereitet, Notiz {i}"))
            .await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let st = crate::procs::self_status();
    client.close().await?;
    println!(
        "{}",
        json!({"cases": cases.len(), "first_sync_ms": first_sync_ms,
               "add_note_p50_ms": percentile(&lat, 0.5), "add_note_p99_ms": percentile(&lat, 0.99),
               "rss_kib": st.rss_kib, "hwm_kib": st.hwm_kib})
    );
    Ok(())
}

pub async fn open(dir: &Path, base: &str) -> Result<()> {
    let t = Instant::now();
    let client = Client::open(config(dir, base)).await?;
    client.set_network_available(false);
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let cases = client.list_cases().await?;
    let list_ms = t.elapsed().as_secs_f64() * 1e3 - open_ms;
    let st = crate::procs::self_status();
    client.close().await?;
    println!(
        "{}",
        json!({"cases": cases.len(), "open_ms": open_ms, "list_ms": list_ms,
               "rss_kib": st.rss_kib, "hwm_kib": st.hwm_kib})
    );
    Ok(())
}
