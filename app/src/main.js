// The volunteers' web app: enrollment, the cases this device may hold, a case's notes
// and hours, all offline-first. Documents live in IndexedDB through the stock
// automerge-repo client and sync over /sync; what lotse-core learns from the catch-up,
// this app asks POST /api/v1/device/documents. Writes follow protocol's schema exactly
// (see app/README.md).
import { Automerge, Repo, initializeWasm } from "@automerge/automerge-repo/slim";
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb";

/** The `schema` version of protocol this app reads and writes. */
export const SCHEMA_VERSION = 1;
const DEVICE = "lotse.device";
const HELD = "lotse.held";
const STORE = "lotse";
/** How often the app asks which documents it may hold while it is open. */
const REFRESH_MS = 30_000;

const lang = (navigator.language || "de").toLowerCase().startsWith("en") ? "en" : "de";
const t = (de, en) => (lang === "en" ? en : de);
document.documentElement.lang = lang;

const TOPICS = {
  gesundheit: ["Gesundheit", "Health"],
  bildung: ["Bildung", "Education"],
  erziehung: ["Erziehung", "Parenting"],
  arbeit: ["Arbeit", "Work"],
  beruf: ["Beruf", "Career"],
  soziales: ["Soziales", "Social matters"],
  wohnen: ["Wohnen", "Housing"],
  behoerden: ["Behörden", "Authorities"],
};
const STATUSES = {
  active: ["aktiv", "active"],
  paused: ["pausiert", "paused"],
  closed: ["abgeschlossen", "closed"],
};
const HOURS_KINDS = {
  begleitung: ["Begleitung", "Accompanying"],
  vorbereitung: ["Vorbereitung", "Preparation"],
  telefonat: ["Telefonat", "Phone call"],
};
const label = (table, code) => (table[code] ? t(...table[code]) : code);

const main = document.getElementById("main");
const net = document.getElementById("net");

let device = readJson(DEVICE);
let repo = null;
/** id -> DocHandle of every document the device holds. */
const handles = new Map();
/** What the server last said: id -> heads it holds (hex), or null before the first answer. */
let serverHeads = null;
let lastError = "";

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

/** A DOM element; children are nodes or text (never HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(title, ...content) {
  document.title = `${title} – Lotse`;
  main.replaceChildren(h("h1", {}, title), ...content.filter(Boolean));
  main.focus();
}

function showNet() {
  const online = navigator.onLine;
  let text = online ? t("Online", "Online") : t("Offline – alles wird gespeichert", "Offline – everything is saved");
  if (online && serverHeads && handles.size) {
    const synced = [...handles.keys()].filter((id) => syncStatus(id) === "synced").length;
    text = t(`Abgeglichen: ${synced} von ${handles.size}`, `Synced: ${synced} of ${handles.size}`);
  }
  net.textContent = text;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: {
      "content-type": "application/json",
      ...(device ? { authorization: `Bearer ${device.token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  return { status: res.status, json };
}

// ---------------------------------------------------------------- enrollment

function codeFromHash() {
  const m = location.hash.match(/^#code=([A-Za-z0-9-]{6,32})$/);
  return m ? m[1] : "";
}

function renderEnroll(code, error) {
  const form = h(
    "form",
    { onsubmit: (e) => enroll(e) },
    h("label", { for: "code" }, t("Anmeldecode", "Enrollment code")),
    h("input", {
      id: "code",
      name: "code",
      required: true,
      autocomplete: "one-time-code",
      autocapitalize: "characters",
      value: code,
      "aria-describedby": "code-hint",
    }),
    h("p", { id: "code-hint", class: "meta" }, t("Den Code gibt Ihnen die Koordination, z. B. 7KQ2M-X9D4T.", "Your coordinator gives you the code, e.g. 7KQ2M-X9D4T.")),
    h("label", { for: "device-name" }, t("Name dieses Geräts", "Name of this device")),
    h("input", { id: "device-name", name: "device_name", required: true, maxlength: 80, value: t("Browser", "Browser") }),
    h("button", { type: "submit" }, t("Anmelden", "Enroll")),
  );
  show(
    t("Willkommen bei Lotse", "Welcome to Lotse"),
    error ? h("div", { class: "alert", role: "alert" }, h("p", {}, error)) : null,
    h("p", {}, t("Melden Sie dieses Gerät einmal mit Ihrem Anmeldecode an. Danach funktioniert die App auch ohne Netz.", "Enroll this device once with your enrollment code. After that the app works offline too.")),
    form,
  );
}

async function enroll(e) {
  e.preventDefault();
  const data = new FormData(e.target);
  const code = String(data.get("code") || "").trim();
  let res;
  try {
    res = await api("POST", "/api/v1/devices/enroll", {
      code,
      device_name: String(data.get("device_name") || "").trim(),
    });
  } catch {
    renderEnroll(code, t("Keine Verbindung zum Server. Bitte später noch einmal.", "No connection to the server. Please try again later."));
    return;
  }
  if (res.status !== 201) {
    const why = {
      400: t("Diesen Code kennt der Server nicht. Bitte genau abtippen.", "The server does not know this code. Please type it exactly."),
      410: t("Dieser Code ist abgelaufen oder schon benutzt. Bitten Sie die Koordination um einen neuen.", "This code has expired or was used already. Ask your coordinator for a new one."),
      422: t("Bitte einen Namen für das Gerät angeben.", "Please give the device a name."),
      429: t("Zu viele Versuche. Bitte später noch einmal.", "Too many attempts. Please try again later."),
    }[res.status];
    renderEnroll(code, why || t("Die Anmeldung ist fehlgeschlagen.", "Enrollment failed."));
    return;
  }
  device = { token: res.json.token, device_id: res.json.device_id, volunteer_id: res.json.volunteer_id };
  localStorage.setItem(DEVICE, JSON.stringify(device));
  // The code leaves the address bar and the history.
  history.replaceState(null, "", `${location.pathname}#cases`);
  connect();
  route();
}

// ---------------------------------------------------------------- sync

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${proto}//${location.host}/sync?token=${encodeURIComponent(device.token)}`;
  repo = new Repo({
    storage: new IndexedDBStorageAdapter(STORE),
    network: [new BrowserWebSocketClientAdapter(url)],
    sharePolicy: async () => true,
  });
  // What this device held last time opens at once, from IndexedDB, with or without net.
  for (const id of readJson(HELD) || []) {
    hold(id)
      .then(() => rerender(id))
      .catch(() => {});
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
}

const urlOf = (id) => `automerge:${id}`;

/** Opens `id` from storage or the server; a document neither has yet is left for later. */
async function hold(id) {
  if (handles.has(id)) return;
  let handle;
  try {
    handle = await repo.find(urlOf(id));
  } catch {
    return;
  }
  if (handles.has(id)) return;
  handles.set(id, handle);
  handle.on("change", () => rerender(id));
}

async function drop(id) {
  const handle = handles.get(id);
  handles.delete(id);
  if (handle) repo.delete(handle.url);
}

/** Asks the server what this device may hold; drops what it may no longer. */
async function refresh() {
  if (!device || !navigator.onLine) {
    showNet();
    return;
  }
  const held = readJson(HELD) || [];
  let res;
  try {
    res = await api("POST", "/api/v1/device/documents", { held });
  } catch {
    showNet();
    return;
  }
  if (res.status === 401 || res.status === 403) {
    await wipe(t("Dieses Gerät wurde gesperrt oder abgemeldet. Alle Daten der App wurden von diesem Gerät gelöscht.", "This device was revoked or signed out. All of the app's data was deleted from this device."));
    return;
  }
  if (res.status !== 200) {
    lastError = t("Der Server antwortet gerade nicht richtig.", "The server is not answering properly right now.");
    showNet();
    return;
  }
  if (res.json.schema_version > SCHEMA_VERSION) {
    // A newer server: fetch the new app before writing anything.
    const reg = await navigator.serviceWorker?.getRegistration();
    await reg?.update();
  }
  lastError = "";
  const listed = new Map(res.json.documents.map((d) => [d.id, d.heads]));
  for (const gone of res.json.gone) {
    await drop(gone.id);
    if (gone.reason === "deleted") notice(t("Ein Fall wurde vom Netzwerk gelöscht.", "A case was deleted by the network."));
  }
  for (const id of held) {
    if (!listed.has(id)) await drop(id);
  }
  serverHeads = listed;
  for (const id of listed.keys()) await hold(id);
  localStorage.setItem(HELD, JSON.stringify([...listed.keys()]));
  showNet();
  rerender();
}

function syncStatus(id) {
  const handle = handles.get(id);
  const doc = handle?.doc();
  if (!doc) return "waiting";
  const theirs = serverHeads?.get(id);
  if (!theirs) return "waiting";
  const ours = Automerge.getHeads(doc);
  return ours.length === theirs.length && ours.every((h) => theirs.includes(h)) ? "synced" : "waiting";
}

function statusBadge(id) {
  const s = lastError ? "error" : syncStatus(id);
  const text = { synced: t("abgeglichen", "synced"), waiting: t("wartet", "waiting"), error: t("Fehler", "error") }[s];
  return h("span", { class: `badge ${s}` }, text);
}

function notice(text) {
  net.textContent = text;
}

/** Removes everything the app stored on this device, and says why. */
async function wipe(why) {
  for (const id of [...handles.keys()]) handles.delete(id);
  try {
    await repo?.shutdown();
  } catch {
    // Going away anyway.
  }
  repo = null;
  localStorage.removeItem(DEVICE);
  localStorage.removeItem(HELD);
  device = null;
  await new Promise((done) => {
    const req = indexedDB.deleteDatabase(STORE);
    req.onsuccess = req.onerror = req.onblocked = () => done();
  });
  for (const key of (await caches?.keys()) || []) await caches.delete(key);
  const reg = await navigator.serviceWorker?.getRegistration();
  const sub = await reg?.pushManager?.getSubscription();
  await sub?.unsubscribe();
  show(
    t("Abgemeldet", "Signed out"),
    h("div", { class: "alert", role: "alert" }, h("p", {}, why)),
    h("button", { type: "button", onclick: () => renderEnroll("") }, t("Neu anmelden", "Enroll again")),
  );
}

// ---------------------------------------------------------------- screens

function route() {
  if (!device) {
    renderEnroll(codeFromHash());
    return;
  }
  const m = location.hash.match(/^#case\/([1-9A-HJ-NP-Za-km-z]+)$/);
  if (m) renderCase(m[1]);
  else if (location.hash === "#device") renderDevice();
  else renderCases();
}

function rerender(id) {
  const m = location.hash.match(/^#case\/(.+)$/);
  if (!device) return;
  if (m && id && m[1] !== id) return;
  // Typing in a form must not be interrupted by a redraw.
  if (main.contains(document.activeElement) && document.activeElement.matches("input, textarea, select")) return;
  route();
}

function caseOf(id) {
  const doc = handles.get(id)?.doc();
  // Scalar strings read as ImmutableString objects, not JS strings.
  return doc && String(doc.type) === "case" ? doc : null;
}

function renderCases() {
  const items = [...handles.keys()]
    .map((id) => [id, caseOf(id)])
    .filter(([, c]) => c)
    .sort(([, a], [, b]) => String(a.label).localeCompare(String(b.label), lang));
  show(
    t("Meine Fälle", "My cases"),
    lastError ? h("div", { class: "alert", role: "alert" }, h("p", {}, lastError)) : null,
    items.length === 0
      ? h("p", {}, serverHeads ? t("Noch keine Fälle.", "No cases yet.") : t("Die Fälle werden geladen …", "Loading cases …"))
      : h(
          "ul",
          { class: "cases" },
          items.map(([id, c]) =>
            h(
              "li",
              {},
              h("a", { href: `#case/${id}` }, String(c.label)),
              h("p", { class: "meta" }, label(TOPICS, String(c.topic)), " · ", label(STATUSES, String(c.status)), " · ", statusBadge(id)),
            ),
          ),
        ),
    h("p", {}, h("a", { href: "#device" }, t("Dieses Gerät", "This device"))),
  );
}

const today = () => new Date().toISOString().slice(0, 10);
const newKey = () => crypto.randomUUID().replaceAll("-", "");

function entries(map) {
  return Object.entries(map || {}).map(([key, v]) => ({ key, ...v }));
}

function renderCase(id) {
  const c = caseOf(id);
  if (!c) {
    show(t("Fall", "Case"), h("p", {}, t("Dieser Fall ist nicht (mehr) auf diesem Gerät.", "This case is not (or no longer) on this device.")), h("a", { href: "#cases" }, t("Zu den Fällen", "To the cases")));
    return;
  }
  const notes = entries(c.notes).sort((a, b) => Number(b.createdAt) - Number(a.createdAt));
  const hours = entries(c.hours)
    .filter((x) => !x.removed)
    .sort((a, b) => String(b.date).localeCompare(String(a.date)));
  show(
    String(c.label),
    h("p", {}, h("a", { href: "#cases" }, "← ", t("Alle Fälle", "All cases"))),
    h("p", { class: "meta" }, label(TOPICS, String(c.topic)), " · ", label(STATUSES, String(c.status)), " · ", statusBadge(id)),
    h("h2", { id: "notes" }, t("Notizen", "Notes")),
    notes.length === 0
      ? h("p", {}, t("Noch keine Notizen.", "No notes yet."))
      : h("ul", { class: "entries", "aria-labelledby": "notes" }, notes.map((n) => h("li", { class: "note" }, h("p", {}, String(n.text)), h("p", { class: "meta" }, new Date(Number(n.createdAt)).toLocaleString(lang))))),
    h(
      "form",
      { onsubmit: (e) => addNote(e, id) },
      h("label", { for: "note-text" }, t("Neue Notiz", "New note")),
      h("textarea", { id: "note-text", name: "text", required: true, maxlength: 10000 }),
      h("button", { type: "submit" }, t("Notiz speichern", "Save note")),
    ),
    h("h2", { id: "hours" }, t("Stunden", "Hours")),
    hours.length === 0
      ? h("p", {}, t("Noch keine Stunden.", "No hours yet."))
      : h("ul", { class: "entries", "aria-labelledby": "hours" }, hours.map((x) => h("li", { class: "hours" }, `${x.date}: ${Number(x.minutes)} ${t("Min.", "min")} + ${Number(x.travelMinutes)} ${t("Min. Fahrt", "min travel")} (${label(HOURS_KINDS, String(x.kind))})`))),
    h(
      "form",
      { onsubmit: (e) => logHours(e, id) },
      h("label", { for: "hours-date" }, t("Tag", "Day")),
      h("input", { id: "hours-date", name: "date", type: "date", required: true, value: today() }),
      h("label", { for: "hours-minutes" }, t("Minuten", "Minutes")),
      h("input", { id: "hours-minutes", name: "minutes", type: "number", min: 1, max: 1440, required: true, inputmode: "numeric" }),
      h("label", { for: "hours-travel" }, t("Fahrtzeit (Minuten)", "Travel time (minutes)")),
      h("input", { id: "hours-travel", name: "travel", type: "number", min: 0, max: 1440, value: 0, inputmode: "numeric" }),
      h("label", { for: "hours-kind" }, t("Art", "Kind")),
      h("select", { id: "hours-kind", name: "kind" }, Object.keys(HOURS_KINDS).map((k) => h("option", { value: k }, label(HOURS_KINDS, k)))),
      h("button", { type: "submit" }, t("Stunden eintragen", "Log hours")),
    ),
  );
}

/** One automerge change, with the message and time protocol's history reads. */
function change(id, message, edit) {
  const now = Date.now();
  handles.get(id).change((d) => edit(d, now), { message, time: Math.floor(now / 1000) });
}

function addNote(e, id) {
  e.preventDefault();
  const text = String(new FormData(e.target).get("text") || "").trim();
  if (!text) return;
  change(id, "add note", (d, now) => {
    d.notes[newKey()] = {
      author: new Automerge.ImmutableString(device.volunteer_id),
      createdAt: now,
      updatedAt: now,
      text,
    };
  });
  document.activeElement?.blur();
  renderCase(id);
}

function logHours(e, id) {
  e.preventDefault();
  const data = new FormData(e.target);
  const minutes = Number.parseInt(String(data.get("minutes")), 10);
  const travel = Number.parseInt(String(data.get("travel") || "0"), 10);
  const date = String(data.get("date"));
  if (!(minutes >= 1 && minutes <= 1440 && travel >= 0 && travel <= 1440 && /^\d{4}-\d{2}-\d{2}$/.test(date))) return;
  change(id, "log hours", (d) => {
    d.hours[newKey()] = {
      author: new Automerge.ImmutableString(device.volunteer_id),
      date: new Automerge.ImmutableString(date),
      minutes,
      travelMinutes: travel,
      kind: new Automerge.ImmutableString(String(data.get("kind"))),
    };
  });
  document.activeElement?.blur();
  renderCase(id);
}

function renderDevice() {
  show(
    t("Dieses Gerät", "This device"),
    h("p", {}, t("Lotse speichert Ihre Fälle auf diesem Gerät, damit Sie auch ohne Netz arbeiten können. Wer das Gerät entsperrt, kann sie lesen.", "Lotse keeps your cases on this device so you can work offline. Anyone who can unlock the device can read them.")),
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: () => {
          if (confirm(t("Alle Daten der App von diesem Gerät löschen?", "Delete all of the app's data from this device?"))) {
            wipe(t("Sie haben dieses Gerät abgemeldet. Alle Daten der App wurden von diesem Gerät gelöscht.", "You signed this device out. All of the app's data was deleted from this device."));
          }
        },
      },
      t("Gerät abmelden und Daten löschen", "Sign out and delete the data"),
    ),
    h("p", {}, h("a", { href: "#cases" }, "← ", t("Zu den Fällen", "To the cases"))),
  );
}

async function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch(() => {});
  }
  await initializeWasm(new URL("automerge.wasm", location.href).href);
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => refresh());
  window.addEventListener("offline", showNet);
  showNet();
  if (device) connect();
  route();
}

start();
