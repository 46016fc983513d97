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
/** Answers to offers given offline: [{id, answer: "accept" | "decline"}], sent in order. */
const ANSWERS = "lotse.answers";
const OFFERS = "lotse.offers";
/** {at, lease_ms}: when the server last answered, and the lease it named then. */
const CONTACT = "lotse.contact";
/** The schema version a newer server named, until an app that knows it runs. */
const NEWER = "lotse.newer-schema";
/** The volunteer's weekly availability as last known, and a change not sent yet. */
const AVAILABILITY = "lotse.availability";
const AVAILABILITY_PENDING = "lotse.availability.pending";
const STORE = "lotse";
/** How often the app asks which documents it may hold while it is open. */
const REFRESH_MS = 30_000;
/** How soon it asks again when a document could not be opened or replayed yet. */
const RETRY_MS = 2_000;
let retry = null;

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
let storage = null;
/** id -> DocHandle of every document the device holds. */
const handles = new Map();
/** Dropped since the app opened: a `find` still under way must not bring them back. */
const dropped = new Set();
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
  const waiting = outdated() && device
    ? h("div", { class: "alert", role: "alert", id: "update" }, h("p", {}, t(
        "Eine neue Version der App wird geladen. Bis dahin können Sie lesen, aber nichts ändern.",
        "A new version of the app is loading. Until then you can read, but not change anything.",
      )))
    : null;
  main.replaceChildren(h("h1", {}, title), ...[waiting, ...content].filter(Boolean));
  for (const form of main.querySelectorAll("form")) {
    if (waiting) for (const field of form.elements) field.disabled = true;
  }
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
  storage = new DeviceStorage(STORE);
  repo = new Repo({
    storage,
    // Back online, the socket is up again within two seconds.
    network: [new BrowserWebSocketClientAdapter(url, 2_000)],
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

/**
 * IndexedDB that writes nothing of a dropped document: a message about it that arrives
 * after the drop (the server's "unavailable", a save the repo had scheduled) would
 * otherwise store it again.
 */
class DeviceStorage extends IndexedDBStorageAdapter {
  async save(key, data) {
    if (dropped.has(key[0])) return;
    return super.save(key, data);
  }
}

/** Opens `id` from storage or the server; a document neither has yet is left for later. */
async function hold(id) {
  if (handles.has(id)) return;
  let handle;
  try {
    handle = await repo.find(urlOf(id));
  } catch {
    return;
  }
  if (dropped.has(id)) {
    // Dropped while it was being opened: the late `find` made it live again.
    repo.delete(urlOf(id));
    return;
  }
  if (handles.has(id)) return;
  handles.set(id, handle);
  handle.on("change", () => rerender(id));
}

async function drop(id) {
  dropped.add(id);
  handles.delete(id);
  // Also when it is not open yet: its stored chunks go either way.
  repo.delete(urlOf(id));
}

/**
 * The device lease: a device that has not reached the server for longer than its
 * network's lease destroys what it holds (a lost phone stops being a risk by itself).
 * `true`: lapsed, and wiped.
 */
async function leaseLapsed() {
  const contact = readJson(CONTACT);
  if (!device || !contact || !(contact.lease_ms > 0)) return false;
  if (Date.now() - contact.at <= contact.lease_ms) return false;
  await wipe(t(
    "Dieses Gerät hatte zu lange keine Verbindung zum Server. Zum Schutz der Daten wurde alles gelöscht. Bitte neu anmelden.",
    "This device had no connection to the server for too long. To protect the data, everything was deleted. Please enroll again.",
  ));
  return true;
}

/** Asks the server what this device may hold; drops what it may no longer. */
async function refresh() {
  if (await leaseLapsed()) return;
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
    // A newer server: this app might write what the server no longer reads. It writes
    // nothing until the service worker has fetched the app that matches, then reloads.
    localStorage.setItem(NEWER, String(res.json.schema_version));
    const reg = await navigator.serviceWorker?.getRegistration();
    reg?.update().catch(() => {});
  }
  lastError = "";
  localStorage.setItem(CONTACT, JSON.stringify({ at: Date.now(), lease_ms: res.json.lease_ms }));
  const listed = new Map(res.json.documents.map((d) => [d.id, d.heads]));
  // An old generation stays until what was typed into it is on its successor.
  const waiting = new Set();
  for (const gone of res.json.gone) {
    if (gone.reason === "replaced" && !(await replaceWith(gone.id, gone.successor, new Set(gone.known || [])))) {
      waiting.add(gone.id);
      continue;
    }
    await drop(gone.id);
    if (gone.reason === "deleted") notice(t("Ein Fall wurde vom Netzwerk gelöscht.", "A case was deleted by the network."));
  }
  for (const id of held) {
    if (!listed.has(id) && !waiting.has(id)) await drop(id);
  }
  // Whatever a late message wrote for a dropped document since goes too.
  for (const id of dropped) {
    if (!listed.has(id)) await storage?.removeRange([id]);
  }
  serverHeads = listed;
  for (const id of listed.keys()) {
    // Shared again after it was withdrawn: welcome back.
    dropped.delete(id);
    await hold(id);
  }
  localStorage.setItem(HELD, JSON.stringify([...listed.keys(), ...waiting]));
  // Just back online, the socket may not be up yet: what could not be opened or
  // replayed is tried again soon, not only at the next regular refresh.
  if (waiting.size || [...listed.keys()].some((id) => !handles.has(id))) {
    clearTimeout(retry);
    retry = setTimeout(refresh, RETRY_MS);
  }
  showNet();
  rerender();
  await syncOffers();
  await syncAvailability();
}

// ---------------------------------------------------------------- new generations

/** Root fields a replay leaves alone: identity, lineage, and the entry maps (by entry). */
const NOT_REPLAYED = new Set(["schema", "type", "organisationId", "createdAt", "caseId", "generation", "erased", "notes", "appointments", "hours"]);
const ENTRY_MAPS = ["notes", "appointments", "hours"];
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The network rewrote a case as `successor` (an entry erased, or the history compacted).
 * What this device wrote to the old one offline, the changes the server did not hold
 * (`known`), is replayed onto the successor, as `lotse-core` does
 * (`protocol/src/schema/generation.rs`, `replay`): a three-way merge of the old document
 * as the server knew it, as it is here, and the successor, entry by entry. Edits of an
 * entry the network erased are dropped, and the app says so.
 */
async function replaceWith(old, successor, known) {
  let oldDoc = handles.get(old)?.doc();
  if (!oldDoc) {
    try {
      oldDoc = (await repo.find(urlOf(old))).doc();
    } catch {
      oldDoc = null;
    }
  }
  dropped.delete(successor);
  await hold(successor);
  const target = handles.get(successor);
  // Nothing of ours to carry over: done. No successor yet: try again later.
  if (!oldDoc) return true;
  if (!target) return false;
  const lost = replay(oldDoc, known, target);
  if (location.hash === `#case/${old}`) location.hash = `#case/${successor}`;
  if (lost.length) {
    notice(t(`${lost.length} Änderung(en) betrafen einen gelöschten Eintrag und wurden nicht übernommen.`, `${lost.length} change(s) concerned an erased entry and were not kept.`));
  }
  return true;
}

function replay(oldDoc, known, target) {
  const changes = Automerge.getAllChanges(oldDoc).map((c) => Automerge.decodeChange(c));
  if (changes.every((c) => known.has(c.hash))) return [];
  // The server's part of our history is closed under dependencies: its heads are the
  // known changes no other known change depends on.
  const inKnown = changes.filter((c) => known.has(c.hash));
  const deps = new Set(inKnown.flatMap((c) => c.deps));
  const heads = inKnown.map((c) => c.hash).filter((h) => !deps.has(h));
  const base = heads.length ? Automerge.toJS(Automerge.view(oldDoc, heads)) : {};
  const mine = Automerge.toJS(oldDoc);
  const lost = [];
  const now = Date.now();
  target.change(
    (d) => {
      for (const key of new Set([...Object.keys(base), ...Object.keys(mine)])) {
        if (NOT_REPLAYED.has(key) || same(base[key], mine[key])) continue;
        if (key === "languages") mergeSet(d, key, base[key] || [], mine[key] || []);
        else if (mine[key] === undefined) delete d[key];
        else d[key] = mine[key];
      }
      const erased = new Set(Object.keys(d.erased || {}));
      for (const kind of ENTRY_MAPS) {
        const [b, m] = [base[kind] || {}, mine[kind] || {}];
        if (same(b, m)) continue;
        if (!d[kind]) d[kind] = {};
        for (const id of new Set([...Object.keys(b), ...Object.keys(m)])) {
          const [be, me, there] = [b[id], m[id], d[kind][id]];
          if (same(be, me)) continue;
          if (be === undefined) {
            if (erased.has(id)) lost.push(id);
            else if (there === undefined) d[kind][id] = me;
          } else if (me === undefined) {
            if (there !== undefined) delete d[kind][id];
          } else if (there === undefined) {
            lost.push(id);
          } else {
            for (const f of new Set([...Object.keys(be), ...Object.keys(me)])) {
              if (same(be[f], me[f])) continue;
              if (typeof be[f] === "string" && typeof me[f] === "string" && typeof there[f] === "string") {
                if (!spliceMerge(d, [kind, id, f], String(there[f]), be[f], me[f])) lost.push(id);
              } else if (me[f] === undefined) delete there[f];
              else there[f] = me[f];
            }
          }
        }
      }
    },
    { message: "replay offline edits", time: Math.floor(now / 1000) },
  );
  return lost;
}

/** A list used as a set (the case's languages): our additions and removals. */
function mergeSet(d, key, base, mine) {
  const [b, m] = [new Set(base.map(String)), new Set(mine.map(String))];
  if (!d[key]) d[key] = [];
  for (const v of m) if (!b.has(v) && !d[key].some((x) => String(x) === v)) d[key].push(new Automerge.ImmutableString(v));
  for (const v of b) {
    if (m.has(v)) continue;
    const at = d[key].findIndex((x) => String(x) === v);
    if (at >= 0) d[key].deleteAt(at);
  }
}

/**
 * Our edit of a text (base -> mine) applied to the successor's text where the edited
 * stretch stands between the same neighbours, with as much of them as makes the place
 * unique. `false`: no such place (the text was rewritten meanwhile).
 */
function spliceMerge(d, path, now, base, mine) {
  if (now === mine) return true;
  let p = 0;
  while (p < base.length && p < mine.length && base[p] === mine[p]) p += 1;
  let q = 0;
  while (q < base.length - p && q < mine.length - p && base[base.length - 1 - q] === mine[mine.length - 1 - q]) q += 1;
  const deleted = base.slice(p, base.length - q);
  const inserted = mine.slice(p, mine.length - q);
  const [left, right] = [base.slice(0, p), base.slice(base.length - q)];
  for (const k of [32, 16, 8, 4, 2, 1, 0]) {
    const [kl, kr] = [Math.min(k, left.length), Math.min(k, right.length)];
    if (kl + kr + deleted.length === 0) continue;
    const needle = left.slice(left.length - kl) + deleted + right.slice(0, kr);
    const first = now.indexOf(needle);
    if (first < 0) continue;
    if (now.indexOf(needle, first + 1) >= 0) continue;
    Automerge.splice(d, path, first + kl, deleted.length, inserted);
    return true;
  }
  if (base === "") {
    Automerge.splice(d, path, now.length, 0, inserted);
    return true;
  }
  return false;
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
  // An open connection would hold the deletion back until the page closes.
  try {
    (await storage?.dbPromise)?.close();
  } catch {
    // Not open: nothing to close.
  }
  storage = null;
  localStorage.removeItem(DEVICE);
  localStorage.removeItem(HELD);
  localStorage.removeItem(ANSWERS);
  localStorage.removeItem(OFFERS);
  localStorage.removeItem(CONTACT);
  localStorage.removeItem(NEWER);
  localStorage.removeItem(AVAILABILITY);
  localStorage.removeItem(AVAILABILITY_PENDING);
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
  else if (location.hash === "#offers") renderOffers();
  else if (location.hash === "#week") renderWeek();
  else if (location.hash.startsWith("#hours")) renderHours(location.hash.slice("#hours".length + 1));
  else if (location.hash === "#availability") renderAvailability();
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
    nav(),
  );
}

function nav() {
  const open = (readJson(OFFERS) || []).filter((o) => o.status === "offered").length;
  return h(
    "nav",
    { "aria-label": t("Bereiche", "Sections") },
    h("p", {}, h("a", { href: "#offers" }, open ? t(`Anfragen (${open} offen)`, `Requests (${open} open)`) : t("Anfragen", "Requests"))),
    h("p", {}, h("a", { href: "#week" }, t("Termine dieser Woche", "This week's appointments"))),
    h("p", {}, h("a", { href: "#hours" }, t("Meine Stunden", "My hours"))),
    h("p", {}, h("a", { href: "#availability" }, t("Wann ich kann", "When I am available"))),
    h("p", {}, h("a", { href: "#device" }, t("Dieses Gerät", "This device"))),
  );
}

/** Today on this device's calendar (not UTC's), as `YYYY-MM-DD`. */
const today = () => new Date().toLocaleDateString("sv");
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
      : h("ul", { class: "entries", "aria-labelledby": "notes" }, notes.map((n) => noteItem(id, n))),
    h(
      "form",
      { onsubmit: (e) => addNote(e, id) },
      h("label", { for: "note-text" }, t("Neue Notiz", "New note")),
      h("textarea", { id: "note-text", name: "text", required: true, maxlength: 10000 }),
      h("button", { type: "submit" }, t("Notiz speichern", "Save note")),
    ),
    h("h2", { id: "appointments" }, t("Termine", "Appointments")),
    appointmentsOf(c).length === 0
      ? h("p", {}, t("Keine Termine.", "No appointments."))
      : h("ul", { class: "entries", "aria-labelledby": "appointments" }, appointmentsOf(c).map((a) => appointmentItem(id, a))),
    h(
      "form",
      { onsubmit: (e) => addAppointment(e, id) },
      h("label", { for: "appt-start" }, t("Neuer Termin: Beginn", "New appointment: start")),
      h("input", { id: "appt-start", name: "start", type: "datetime-local", required: true }),
      h("label", { for: "appt-minutes" }, t("Dauer (Minuten)", "Duration (minutes)")),
      h("input", { id: "appt-minutes", name: "minutes", type: "number", min: 5, max: 1440, value: 60, required: true, inputmode: "numeric" }),
      h("label", { for: "appt-place" }, t("Ort", "Place")),
      h("input", { id: "appt-place", name: "place", maxlength: 200 }),
      h("label", { for: "appt-purpose" }, t("Worum es geht", "What it is about")),
      h("input", { id: "appt-purpose", name: "purpose", maxlength: 200 }),
      h("button", { type: "submit" }, t("Termin speichern", "Save appointment")),
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

function noteItem(id, n) {
  const field = `note-${n.key}`;
  return h(
    "li",
    { class: "note" },
    h("p", {}, String(n.text)),
    h("p", { class: "meta" }, new Date(Number(n.createdAt)).toLocaleString(lang)),
    h(
      "details",
      {},
      h("summary", {}, t("Bearbeiten", "Edit")),
      h(
        "form",
        { onsubmit: (e) => editNote(e, id, n.key) },
        h("label", { for: field }, t("Notiz", "Note")),
        h("textarea", { id: field, name: "text", required: true, maxlength: 10000 }, String(n.text)),
        h("button", { type: "submit" }, t("Änderung speichern", "Save change")),
      ),
    ),
  );
}

/**
 * Writes only what changed, as one splice of the note's text (common start and end kept),
 * so that an edit made elsewhere at the same time, in another part of the text, merges.
 */
function editNote(e, id, key) {
  e.preventDefault();
  const next = String(new FormData(e.target).get("text") || "");
  const before = String(caseOf(id)?.notes?.[key]?.text ?? "");
  // Automerge's JavaScript API counts text in UTF-16 code units, like JS strings; the
  // bounds are moved off the middle of a surrogate pair.
  const [a, b] = [before, next];
  const high = (s, i) => i > 0 && i < s.length && /[\uD800-\uDBFF]/.test(s[i - 1]);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
  while (high(a, start) || high(b, start)) start -= 1;
  let end = 0;
  while (end < a.length - start && end < b.length - start && a[a.length - 1 - end] === b[b.length - 1 - end]) end += 1;
  while (end > 0 && (high(a, a.length - end) || high(b, b.length - end))) end -= 1;
  const del = a.length - start - end;
  const insert = b.slice(start, b.length - end);
  if (del === 0 && insert === "") return;
  change(id, "edit note", (d, now) => {
    Automerge.splice(d, ["notes", key, "text"], start, del, insert);
    d.notes[key].updatedAt = now;
  });
  document.activeElement?.blur();
  renderCase(id);
}

/** Whether a newer server asked for a newer app, which has not arrived yet. */
function outdated() {
  return Number(localStorage.getItem(NEWER) || 0) > SCHEMA_VERSION;
}

/** One automerge change, with the message and time protocol's history reads. */
function change(id, message, edit) {
  if (outdated()) return;
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

const when = (ms) =>
  new Date(Number(ms)).toLocaleString(lang, { weekday: "short", day: "numeric", month: "numeric", hour: "2-digit", minute: "2-digit" });

function appointmentsOf(c) {
  return entries(c.appointments).sort((a, b) => Number(a.start) - Number(b.start));
}

function appointmentItem(id, a) {
  const cancelled = Boolean(a.cancelled);
  return h(
    "li",
    { class: "appointment" },
    h("p", {}, cancelled ? h("s", {}, when(a.start)) : when(a.start), " – ", String(a.purpose || ""), a.place ? ` (${a.place})` : "", cancelled ? ` · ${t("abgesagt", "cancelled")}` : ""),
    cancelled
      ? null
      : h(
          "p",
          {},
          h("button", { type: "button", class: "secondary", onclick: () => moveAppointment(id, a.key, 24 * 3_600_000) }, t("Einen Tag später", "One day later")),
          h("button", { type: "button", class: "danger", onclick: () => cancelAppointment(id, a.key) }, t("Absagen", "Cancel")),
        ),
  );
}

function addAppointment(e, id) {
  e.preventDefault();
  const data = new FormData(e.target);
  const start = new Date(String(data.get("start"))).getTime();
  const minutes = Number.parseInt(String(data.get("minutes")), 10);
  if (!Number.isFinite(start) || !(minutes >= 5 && minutes <= 1440)) return;
  change(id, "add appointment", (d) => {
    d.appointments[newKey()] = {
      start,
      end: start + minutes * 60_000,
      place: new Automerge.ImmutableString(String(data.get("place") || "").trim()),
      purpose: new Automerge.ImmutableString(String(data.get("purpose") || "").trim()),
      cancelled: false,
    };
  });
  document.activeElement?.blur();
  renderCase(id);
}

function moveAppointment(id, key, by) {
  change(id, "update appointment", (d) => {
    const a = d.appointments[key];
    a.start = Number(a.start) + by;
    a.end = Number(a.end) + by;
  });
  renderCase(id);
}

function cancelAppointment(id, key) {
  change(id, "update appointment", (d) => {
    d.appointments[key].cancelled = true;
  });
  renderCase(id);
}

function renderWeek() {
  const from = new Date();
  from.setHours(0, 0, 0, 0);
  const until = from.getTime() + 7 * 24 * 3_600_000;
  const items = [];
  for (const id of handles.keys()) {
    const c = caseOf(id);
    if (!c) continue;
    for (const a of appointmentsOf(c)) {
      if (Number(a.start) >= from.getTime() && Number(a.start) < until && !a.cancelled) items.push([id, c, a]);
    }
  }
  items.sort(([, , a], [, , b]) => Number(a.start) - Number(b.start));
  show(
    t("Termine dieser Woche", "This week's appointments"),
    items.length === 0
      ? h("p", {}, t("Keine Termine in den nächsten sieben Tagen.", "No appointments in the next seven days."))
      : h("ul", { class: "entries" }, items.map(([id, c, a]) => h("li", {}, h("p", {}, when(a.start), " – ", String(a.purpose || "")), h("p", { class: "meta" }, h("a", { href: `#case/${id}` }, String(c.label)))))),
    h("p", {}, h("a", { href: "#cases" }, "← ", t("Zu den Fällen", "To the cases"))),
  );
}

/** `YYYY-MM` of a date, and the month before or after it. */
const monthOf = (d) => d.toISOString().slice(0, 7);
function shiftMonth(month, by) {
  const [y, m] = month.split("-").map(Number);
  return monthOf(new Date(Date.UTC(y, m - 1 + by, 1)));
}

/**
 * The volunteer's hours of one month, by case: what the monthly statement for the
 * expense allowance is made from (the coordinator's statement counts the same entries).
 * Entries a coordinator removed are left out.
 */
function renderHours(month) {
  const shown = /^\d{4}-\d{2}$/.test(month) ? month : today().slice(0, 7);
  const rows = [];
  for (const id of handles.keys()) {
    const c = caseOf(id);
    if (!c) continue;
    const mine = entries(c.hours).filter(
      (x) => !x.removed && String(x.author) === device.volunteer_id && String(x.date).startsWith(shown),
    );
    if (!mine.length) continue;
    const sum = (f) => mine.reduce((n, x) => n + Number(x[f] || 0), 0);
    rows.push({ id, label: String(c.label), minutes: sum("minutes"), travel: sum("travelMinutes") });
  }
  rows.sort((a, b) => a.label.localeCompare(b.label, lang));
  const total = (f) => rows.reduce((n, r) => n + r[f], 0);
  const hm = (min) => `${Math.floor(min / 60)}:${String(min % 60).padStart(2, "0")} h`;
  const title = new Date(`${shown}-01T12:00:00Z`).toLocaleDateString(lang, { month: "long", year: "numeric" });
  show(
    t(`Meine Stunden im ${title}`, `My hours in ${title}`),
    rows.length === 0
      ? h("p", {}, t("In diesem Monat keine Stunden.", "No hours this month."))
      : h(
          "table",
          {},
          h("caption", { class: "sr-only" }, t("Stunden und Fahrtzeit je Fall", "Hours and travel time by case")),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("Fall", "Case")), h("th", { scope: "col" }, t("Einsatz", "Work")), h("th", { scope: "col" }, t("Fahrt", "Travel")))),
          h(
            "tbody",
            {},
            rows.map((r) => h("tr", {}, h("td", {}, h("a", { href: `#case/${r.id}` }, r.label)), h("td", {}, hm(r.minutes)), h("td", {}, hm(r.travel)))),
          ),
          h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, t("Zusammen", "Total")), h("td", { id: "hours-total" }, hm(total("minutes"))), h("td", { id: "travel-total" }, hm(total("travel"))))),
        ),
    h(
      "p",
      {},
      h("a", { href: `#hours/${shiftMonth(shown, -1)}` }, "← ", t("Vormonat", "Previous month")),
      " · ",
      h("a", { href: `#hours/${shiftMonth(shown, 1)}` }, t("Folgemonat", "Next month"), " →"),
    ),
    h("p", {}, h("a", { href: "#cases" }, "← ", t("Zu den Fällen", "To the cases"))),
  );
}

const WEEKDAYS = [
  ["Montag", "Monday"],
  ["Dienstag", "Tuesday"],
  ["Mittwoch", "Wednesday"],
  ["Donnerstag", "Thursday"],
  ["Freitag", "Friday"],
  ["Samstag", "Saturday"],
  ["Sonntag", "Sunday"],
];

/** Sends a changed availability, and fetches the current one. */
async function syncAvailability() {
  if (!device || !navigator.onLine) return;
  const pending = readJson(AVAILABILITY_PENDING);
  try {
    const res = pending
      ? await api("PUT", "/api/v1/device/availability", { availability: pending })
      : await api("GET", "/api/v1/device/availability");
    if (pending && res.status !== 200 && res.status < 500) {
      // Refused (e.g. a time the server does not take): drop it and show why.
      localStorage.removeItem(AVAILABILITY_PENDING);
      lastError = t("Die Verfügbarkeit wurde nicht angenommen.", "The availability was not accepted.");
    }
    if (res.status === 200) {
      localStorage.removeItem(AVAILABILITY_PENDING);
      localStorage.setItem(AVAILABILITY, JSON.stringify(res.json.availability));
    }
  } catch {
    // Offline again: it is sent next time.
  }
}

/** One window per weekday: what the matching of requests ranks by. */
function renderAvailability() {
  const slots = readJson(AVAILABILITY_PENDING) || readJson(AVAILABILITY) || [];
  const on = new Map(slots.map((x) => [x.weekday, x]));
  const saved = readJson(AVAILABILITY_PENDING)
    ? h("p", { class: "meta", role: "status" }, t("Gespeichert – wird gesendet, sobald Netz da ist.", "Saved – sent when there is a network."))
    : null;
  show(
    t("Wann ich kann", "When I am available"),
    h("p", {}, t("Die Koordination sieht das und fragt Sie eher zu diesen Zeiten an.", "Your coordinators see this and ask you for these times first.")),
    lastError ? h("div", { class: "alert", role: "alert" }, h("p", {}, lastError)) : null,
    saved,
    h(
      "form",
      { onsubmit: (e) => saveAvailability(e) },
      WEEKDAYS.map(([de, en], i) => {
        const day = i + 1;
        const slot = on.get(day);
        return h(
          "fieldset",
          {},
          h("legend", {}, t(de, en)),
          h("label", {}, h("input", { type: "checkbox", name: `day-${day}`, checked: Boolean(slot) }), " ", t("verfügbar", "available")),
          h("label", { for: `from-${day}` }, t("von", "from")),
          h("input", { id: `from-${day}`, name: `from-${day}`, type: "time", value: slot?.from || "09:00" }),
          h("label", { for: `to-${day}` }, t("bis", "until")),
          h("input", { id: `to-${day}`, name: `to-${day}`, type: "time", value: slot?.to || "17:00" }),
        );
      }),
      h("button", { type: "submit" }, t("Verfügbarkeit speichern", "Save availability")),
    ),
    h("p", {}, h("a", { href: "#cases" }, "← ", t("Zu den Fällen", "To the cases"))),
  );
}

async function saveAvailability(e) {
  e.preventDefault();
  const data = new FormData(e.target);
  const slots = [];
  for (let day = 1; day <= 7; day++) {
    if (!data.get(`day-${day}`)) continue;
    const [from, to] = [String(data.get(`from-${day}`)), String(data.get(`to-${day}`))];
    if (from >= to) {
      lastError = t(`${t(...WEEKDAYS[day - 1])}: „bis“ muss nach „von“ liegen.`, `${t(...WEEKDAYS[day - 1])}: "until" must be after "from".`);
      renderAvailability();
      lastError = "";
      return;
    }
    slots.push({ weekday: day, from, to });
  }
  localStorage.setItem(AVAILABILITY_PENDING, JSON.stringify(slots));
  await syncAvailability();
  document.activeElement?.blur();
  renderAvailability();
}

// ---------------------------------------------------------------- offers

const OFFER_STATUS = {
  offered: ["offen", "open"],
  accepted: ["angenommen", "accepted"],
  declined: ["abgelehnt", "declined"],
  taken: ["schon vergeben", "taken by someone else"],
  withdrawn: ["zurückgezogen", "withdrawn"],
};

/** Fetches the offers, after sending answers given offline (the server decides them). */
async function syncOffers() {
  if (!device || !navigator.onLine) return;
  const queued = readJson(ANSWERS) || [];
  while (queued.length) {
    const { id, answer } = queued[0];
    let res;
    try {
      res = await api("POST", `/api/v1/offers/${encodeURIComponent(id)}/${answer}`);
    } catch {
      break;
    }
    if (res.status >= 500) break;
    queued.shift();
    localStorage.setItem(ANSWERS, JSON.stringify(queued));
  }
  try {
    const res = await api("GET", "/api/v1/offers");
    if (res.status === 200) localStorage.setItem(OFFERS, JSON.stringify(res.json));
  } catch {
    // Offline again: the list on the device stays.
  }
  if (location.hash === "#offers" || location.hash === "" || location.hash === "#cases") rerender();
}

function answer(id, what) {
  const queued = readJson(ANSWERS) || [];
  queued.push({ id, answer: what });
  localStorage.setItem(ANSWERS, JSON.stringify(queued));
  syncOffers().then(renderOffers);
  renderOffers();
}

function renderOffers() {
  const offers = readJson(OFFERS) || [];
  const pending = new Map((readJson(ANSWERS) || []).map((a) => [a.id, a.answer]));
  show(
    t("Anfragen", "Requests"),
    offers.length === 0
      ? h("p", {}, t("Keine Anfragen.", "No requests."))
      : h(
          "ul",
          { class: "entries" },
          offers.map((o) =>
            h(
              "li",
              { class: "offer" },
              h("p", {}, h("strong", {}, label(TOPICS, o.topic)), " · ", new Date(o.starts_at).toLocaleString(lang), " · ", o.place_area),
              o.description ? h("p", {}, o.description) : null,
              pending.has(o.id)
                ? h("p", { class: "meta" }, pending.get(o.id) === "accept" ? t("Zusage gespeichert – wird gesendet, sobald Netz da ist.", "Acceptance saved – sent when there is a network.") : t("Absage gespeichert – wird gesendet, sobald Netz da ist.", "Decline saved – sent when there is a network."))
                : h("p", { class: "meta" }, label(OFFER_STATUS, o.status)),
              o.status === "offered" && !pending.has(o.id)
                ? h(
                    "p",
                    {},
                    h("button", { type: "button", onclick: () => answer(o.id, "accept") }, t("Annehmen", "Accept")),
                    h("button", { type: "button", class: "secondary", onclick: () => answer(o.id, "decline") }, t("Ablehnen", "Decline")),
                  )
                : null,
            ),
          ),
        ),
    h("p", {}, h("a", { href: "#cases" }, "← ", t("Zu den Fällen", "To the cases"))),
  );
}

/** The VAPID key as the bytes `pushManager.subscribe` wants. */
function keyBytes(base64url) {
  const b64 = base64url.replaceAll("-", "+").replaceAll("_", "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

async function enablePush(status) {
  status.textContent = t("Wird eingeschaltet …", "Turning on …");
  try {
    if (!("Notification" in self) || !navigator.serviceWorker) throw new Error("unsupported");
    if ((await Notification.requestPermission()) !== "granted") {
      status.textContent = t("Benachrichtigungen sind in diesem Browser nicht erlaubt.", "Notifications are not allowed in this browser.");
      return;
    }
    // A browser that cannot reach its push service never settles the subscription (and
    // one whose worker is not installed yet never gets ready): answer after 10 s anyway.
    const sub = await Promise.race([
      (async () => {
        const reg = await navigator.serviceWorker.ready;
        const key = await api("GET", "/api/v1/push/vapid-public-key");
        return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key.json.public_key) });
      })(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), 10_000)),
    ]);
    const saved = await api("POST", "/api/v1/push/subscriptions", sub.toJSON());
    if (saved.status !== 201 && saved.status !== 200) throw new Error(`status ${saved.status}`);
    status.textContent = t("Eingeschaltet: neue Anfragen erscheinen als Benachrichtigung.", "On: new requests appear as notifications.");
  } catch {
    status.textContent = t(
      "Benachrichtigungen gehen hier gerade nicht: der Browser erreicht seinen Push-Dienst nicht. Bitte später noch einmal. Auf dem iPhone: erst „Zum Home-Bildschirm“, dann die App von dort öffnen.",
      "Notifications do not work here right now: the browser cannot reach its push service. Please try again later. On an iPhone: first “Add to Home Screen”, then open the app from there.",
    );
  }
}

function renderDevice() {
  const pushStatus = h("p", { id: "push-status", role: "status" });
  show(
    t("Dieses Gerät", "This device"),
    h("h2", {}, t("Benachrichtigungen", "Notifications")),
    h("p", {}, t("Neue Anfragen als Benachrichtigung, ohne Namen oder Orte.", "New requests as notifications, without names or places.")),
    h("button", { type: "button", onclick: () => enablePush(pushStatus) }, t("Benachrichtigungen einschalten", "Turn on notifications")),
    pushStatus,
    h("h2", {}, t("Daten auf diesem Gerät", "Data on this device")),
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
    // A new app took over (after a newer server asked for it): run it.
    let had = Boolean(navigator.serviceWorker.controller);
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      if (had) location.reload();
      had = true;
    });
  }
  // This app knows the version a newer server asked for: the block is over.
  if (!outdated()) localStorage.removeItem(NEWER);
  await initializeWasm(new URL("automerge.wasm", location.href).href);
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => refresh());
  window.addEventListener("offline", showNet);
  showNet();
  if (await leaseLapsed()) return;
  if (device) connect();
  route();
}

start();
