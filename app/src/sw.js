// The app's service worker: the shell from the cache (so the app opens offline), and
// Web Push notices without personal data. `version.js` (written by the build) names the
// build's content hash: a browser checks imported scripts for changes too, so a new build
// installs a new worker with a new cache, and the old cache is dropped.
importScripts("version.js");
const VERSION = `lotse-${self.LOTSE_VERSION}`;
const SHELL = ["./", "app.js", "app.css", "automerge.wasm", "manifest.webmanifest", "icon.svg"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(VERSION)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!url.pathname.startsWith("/app/")) return;
  event.respondWith(
    caches.open(VERSION).then(async (cache) => {
      // Every screen is the one page; the fragment picks the screen.
      const key = event.request.mode === "navigate" ? "./" : event.request;
      const hit = await cache.match(key, { ignoreSearch: true });
      return hit || fetch(event.request);
    }),
  );
});

const TEXTS = {
  offer: ["Neue Anfrage für Sie", "A new request for you"],
  taken: ["Eine Anfrage ist vergeben", "A request was taken"],
  cancelled: ["Eine Anfrage wurde abgesagt", "A request was cancelled"],
};

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch {
    payload = {};
  }
  const en = (self.navigator.language || "de").toLowerCase().startsWith("en");
  const [de, english] = TEXTS[payload.kind] || ["Neuigkeiten in Lotse", "News in Lotse"];
  event.waitUntil(
    self.registration.showNotification(en ? english : de, {
      body: en ? "Open Lotse to see it." : "Öffnen Sie Lotse, um sie zu sehen.",
      icon: "icon.svg",
      tag: typeof payload.request_id === "string" ? payload.request_id : undefined,
      data: { screen: "#offers" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(`./${event.notification.data?.screen || ""}`, self.registration.scope).href;
  event.waitUntil(
    self.clients.matchAll({ type: "window" }).then((windows) => {
      const open = windows.find((w) => w.url.startsWith(self.registration.scope));
      if (open) return open.navigate(target).then((w) => w?.focus());
      return self.clients.openWindow(target);
    }),
  );
});
