//! Notifications on the coordinator's own computer: a card on the overview that turns Web
//! Push on for this browser, the small script behind it, and the service worker that shows
//! what arrives (a request from the intake form, a request a volunteer accepted).
//!
//! The card is hidden until the script finds a browser that can do it, so the page reads
//! the same without JavaScript. The service worker gets its language and the topic names
//! from its URL's `lang`, because it runs apart from any page. A push names a topic,
//! languages and a time, never a person or a place (see `crate::push::notice`).

use axum::extract::Query;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::i18n::{self, Lang};
use super::layout;

/// The card on the overview. Buttons and status are wired by `PAGE_JS`.
pub fn card(l: Lang) -> Markup {
    html! {
        section.card #notifications hidden aria-labelledby="notify-h" {
            h2 #notify-h { (l.t("Benachrichtigungen auf diesem Gerät", "Notifications on this device")) }
            p {
                (l.t(
                    "Der Browser meldet sich, wenn eine Anfrage über das Formular eingeht oder jemand eine Anfrage annimmt, auch wenn das Dashboard geschlossen ist. Die Meldung nennt Thema, Sprachen und Zeit, keine Namen und keine Orte.",
                    "The browser tells you when a request comes in through the form or someone accepts a request, even with the dashboard closed. The notice names topic, languages and time, never names or places.",
                ))
            }
            p #notify-status role="status" aria-live="polite" {}
            button type="button" #notify-on { (l.t("Benachrichtigungen einschalten", "Turn notifications on")) }
            button type="button" #notify-off hidden { (l.t("Benachrichtigungen ausschalten", "Turn notifications off")) }
        }
    }
}

pub fn page_js() -> Response {
    layout::asset(JS_TYPE, PAGE_JS, "public, max-age=300")
}

#[derive(Deserialize)]
pub struct SwQuery {
    lang: Option<String>,
}

/// The service worker, in the language of the page that registered it.
pub async fn service_worker(Query(q): Query<SwQuery>) -> Response {
    let l = q.lang.as_deref().and_then(Lang::parse).unwrap_or(Lang::De);
    let topics: serde_json::Map<String, serde_json::Value> = i18n::TOPICS
        .iter()
        .map(|code| ((*code).to_owned(), i18n::topic(l, code).into()))
        .collect();
    let titles = serde_json::json!({
        "new_request": l.t("Neue Anfrage", "New request"),
        "accepted": l.t("Anfrage angenommen", "Request accepted"),
    });
    let words = serde_json::json!({
        "other": "Lotse",
        "languages": l.t("Sprachen", "Languages"),
        "locale": l.t("de-DE", "en-GB"),
    });
    let body = format!(
        "\"use strict\";\nconst TOPICS = {};\nconst TITLES = {titles};\nconst WORDS = {words};\n{SW_JS}",
        serde_json::Value::Object(topics),
    );
    // A new version must reach browsers soon; they re-check a worker at most daily anyway.
    layout::asset(JS_TYPE, body, "no-cache")
}

const JS_TYPE: &str = "text/javascript; charset=utf-8";

const PAGE_JS: &str = r#"(function () {
  "use strict";
  var card = document.getElementById("notifications");
  if (!card || !window.isSecureContext || !("serviceWorker" in navigator) ||
      !("PushManager" in window) || !("Notification" in window) || !window.fetch) return;
  var de = (document.documentElement.lang || "de") === "de";
  function t(d, e) { return de ? d : e; }
  var on = document.getElementById("notify-on");
  var off = document.getElementById("notify-off");
  var status = document.getElementById("notify-status");
  var scope = "/dashboard/";
  var worker = "/dashboard/sw.js?lang=" + (de ? "de" : "en");

  function show(subscribed) {
    on.hidden = subscribed;
    off.hidden = !subscribed;
    card.setAttribute("data-push", subscribed ? "on" : "off");
  }
  function say(text) { status.textContent = text; }
  function bytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function call(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (res) {
      if (!res.ok) throw new Error(t("Server antwortet ", "server answered ") + res.status);
      return res.status === 204 ? null : res.json();
    });
  }
  // A browser whose push service cannot be reached (no connection to it, a blocking
  // proxy) never settles the subscription; say so instead of waiting forever.
  function within(ms, promise) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        reject(new Error(t("Der Push-Dienst des Browsers antwortet nicht. Bitte später noch einmal versuchen.",
                           "The browser's push service does not answer. Please try again later.")));
      }, ms);
      promise.then(function (v) { clearTimeout(timer); resolve(v); },
                   function (e) { clearTimeout(timer); reject(e); });
    });
  }
  // `navigator.serviceWorker.ready` would wait for a worker controlling this page, and
  // `/dashboard` itself lies outside the `/dashboard/` scope: wait for this one instead.
  function activated(reg) {
    if (reg.active) return reg;
    var w = reg.installing || reg.waiting;
    return new Promise(function (resolve, reject) {
      if (!w) { reject(new Error(t("Service Worker fehlt", "service worker missing"))); return; }
      w.addEventListener("statechange", function () {
        if (w.state === "activated") resolve(reg);
        if (w.state === "redundant") reject(new Error(t("Service Worker wurde verworfen", "service worker was discarded")));
      });
    });
  }
  function current() {
    return navigator.serviceWorker.getRegistration(scope).then(function (reg) {
      return reg ? reg.pushManager.getSubscription() : null;
    });
  }

  card.hidden = false;
  current().then(function (sub) { show(!!sub); }, function () { show(false); });

  on.addEventListener("click", function () {
    on.disabled = true;
    say(t("Wird eingeschaltet …", "Turning on …"));
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") {
        throw new Error(t("Der Browser erlaubt dieser Seite keine Benachrichtigungen (Website-Einstellungen).",
                          "The browser does not allow notifications for this site (site settings)."));
      }
      return navigator.serviceWorker.register(worker, { scope: scope });
    }).then(activated).then(function (reg) {
      return call("GET", "/api/v1/push/vapid-public-key").then(function (key) {
        var pending = reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes(key.public_key) });
        return within(10000, pending).catch(function (e) {
          // One that arrives after we gave up would be unknown to the server: drop it.
          pending.then(function (late) { late.unsubscribe(); }, function () {});
          throw e;
        });
      });
    }).then(function (sub) {
      var json = sub.toJSON();
      return call("POST", "/api/v1/push/subscriptions", { endpoint: json.endpoint, keys: json.keys })
        .catch(function (e) { return sub.unsubscribe().then(function () { throw e; }); });
    }).then(function () {
      show(true);
      say(t("Benachrichtigungen sind eingeschaltet.", "Notifications are on."));
    }).catch(function (e) {
      show(false);
      say(t("Benachrichtigungen konnten nicht eingeschaltet werden: ", "Notifications could not be turned on: ") + e.message);
    }).then(function () { on.disabled = false; });
  });

  off.addEventListener("click", function () {
    off.disabled = true;
    current().then(function (sub) {
      if (!sub) return null;
      return call("DELETE", "/api/v1/push/subscriptions", { endpoint: sub.endpoint })
        .catch(function () { return null; })
        .then(function () { return sub.unsubscribe(); });
    }).then(function () {
      show(false);
      say(t("Benachrichtigungen sind ausgeschaltet.", "Notifications are off."));
    }).catch(function (e) {
      say(t("Ausschalten fehlgeschlagen: ", "Could not turn off: ") + e.message);
    }).then(function () { off.disabled = false; });
  });
})();
"#;

/// Follows the `TOPICS`, `TITLES` and `WORDS` constants the handler writes in front of it.
const SW_JS: &str = r#"
self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

var REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  var title = Object.prototype.hasOwnProperty.call(TITLES, data.kind) ? TITLES[data.kind] : WORDS.other;
  var parts = [];
  if (typeof data.topic === "string") {
    parts.push(Object.prototype.hasOwnProperty.call(TOPICS, data.topic) ? TOPICS[data.topic] : data.topic);
  }
  if (Array.isArray(data.languages) && data.languages.length) {
    parts.push(WORDS.languages + ": " + data.languages.map(String).join(", "));
  }
  if (typeof data.window_start === "number" && isFinite(data.window_start)) {
    try {
      parts.push(new Date(data.window_start).toLocaleString(WORDS.locale, {
        timeZone: "Europe/Berlin", weekday: "short", day: "numeric", month: "numeric",
        hour: "2-digit", minute: "2-digit"
      }));
    } catch (e) { /* a date out of range shows no time */ }
  }
  var id = typeof data.request_id === "string" && REQUEST_ID.test(data.request_id) ? data.request_id : null;
  event.waitUntil(self.registration.showNotification(title, {
    body: parts.join(" · "),
    lang: WORDS.locale.slice(0, 2),
    tag: id ? data.kind + ":" + id : undefined,
    data: { url: id ? "/dashboard/requests/" + id : "/dashboard" }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || "/dashboard";
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (new URL(list[i].url).pathname === url && "focus" in list[i]) return list[i].focus();
    }
    return self.clients.openWindow(url);
  }));
});
"#;
