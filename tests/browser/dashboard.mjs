#!/usr/bin/env node
// The coordinators' dashboard in a real headless Chromium (issue 6).
//
// Starts the real `lotse-server` binary on 127.0.0.1:0 with a fresh SQLite database,
// sets up a network through the REST API, then walks through the dashboard as a
// coordinator would: log in, create a request, see the candidates, offer; a phone (an
// automerge-repo client with a device token) accepts and syncs a note, and the open
// overview and case pages update without a reload; revoke a device; open the reports
// and download the CSV; switch to English. Every page is screenshotted into
// tests/artifacts/browser/ and checked with axe-core (no serious or critical
// violations), and no page may break its Content-Security-Policy.
//
// Environment: LOTSE_SERVER_BIN (default ../../target/debug/lotse-server),
// CHROMIUM (default /usr/bin/chromium), ARTIFACTS (default ../artifacts/browser).
// Ends with the line `N passed, M failed`; exits 1 on any failure.

import { spawn, spawnSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { createRequire } from "node:module"

import { chromium } from "playwright-core"
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const BIN = process.env.LOTSE_SERVER_BIN ?? path.resolve(here, "../../target/debug/lotse-server")
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium"
const ARTIFACTS = process.env.ARTIFACTS ?? path.resolve(here, "../artifacts/browser")
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8")
const TIMEOUT = 20_000

const ORG = "Integrationslotsen Teststadt"
const EMAIL = "koordination@teststadt.example"
const PASSWORD = "ein langes Test-Passwort 2026"

// ---- bookkeeping -----------------------------------------------------------------

const results = []
async function check(name, fn) {
  const started = Date.now()
  try {
    await fn()
    results.push({ name, ok: true })
    console.log(`ok   ${name} (${Date.now() - started} ms)`)
  } catch (e) {
    results.push({ name, ok: false, error: e })
    console.log(`FAIL ${name}: ${e?.stack ?? e}`)
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message)
}

const sleep = ms => new Promise(r => setTimeout(r, ms))

// ---- the server ------------------------------------------------------------------

const work = fs.mkdtempSync(path.join(os.tmpdir(), "lotse-browser-"))
const dbUrl = `sqlite://${work}/lotse.db`
let server

function createCoordinator() {
  const r = spawnSync(BIN, ["create-coordinator", "--org", ORG, "--email", EMAIL, "--name", "Dana Koordination",
    "--password-stdin", "--database-url", dbUrl], { input: PASSWORD + "\n", encoding: "utf8" })
  if (r.status !== 0) throw new Error(`create-coordinator failed: ${r.stderr}${r.stdout}`)
}

function startServer() {
  return new Promise((resolve, reject) => {
    server = spawn(BIN, ["serve", "--bind", "127.0.0.1:0", "--database-url", dbUrl], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
    })
    let out = ""
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 30_000)
    server.stdout.on("data", chunk => {
      out += chunk
      const m = out.match(/listening on (http:\/\/[0-9.:]+)/)
      if (m) { clearTimeout(timer); resolve(m[1]) }
    })
    server.stderr.on("data", chunk => { out += chunk; process.stderr.write(chunk) })
    server.on("exit", code => { clearTimeout(timer); reject(new Error(`server exited (${code}): ${out}`)) })
  })
}

async function stopServer() {
  if (!server || server.exitCode !== null) return
  const exited = new Promise(r => server.once("exit", r))
  server.kill("SIGTERM")
  await Promise.race([exited, sleep(10_000)])
  if (server.exitCode === null) server.kill("SIGKILL")
}

// ---- the REST API (what another coordinator or a phone does) --------------------------

let base
let apiToken

async function api(method, route, { token = apiToken, body } = {}) {
  const res = await fetch(base + route, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  let json = null
  try { json = text ? JSON.parse(text) : null } catch { json = text }
  return { status: res.status, body: json }
}

async function volunteer(display_name, languages, topics, availability) {
  const r = await api("POST", "/api/v1/volunteers", { body: { display_name, languages, topics, availability, pledge_signed_on: "2025-09-12" } })
  assert(r.status === 201, `volunteer: ${JSON.stringify(r.body)}`)
  return r.body.id
}

async function device(volunteerId, device_name) {
  const code = await api("POST", `/api/v1/volunteers/${volunteerId}/enrollment-codes`)
  assert(code.status === 201, `code: ${JSON.stringify(code.body)}`)
  const enrolled = await api("POST", "/api/v1/devices/enroll", { token: null, body: { code: code.body.code, device_name } })
  assert(enrolled.status === 201, `enroll: ${JSON.stringify(enrolled.body)}`)
  return enrolled.body
}

// ---- the browser -----------------------------------------------------------------

const userData = fs.mkdtempSync(path.join(os.tmpdir(), "lotse-chromium-"))
let context
const cspViolations = []

async function launch() {
  context = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    locale: "de-DE",
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
    args: ["--lang=de-DE", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  })
  context.setDefaultTimeout(TIMEOUT)
  context.on("page", watch)
  for (const p of context.pages()) watch(p)
}

function watch(page) {
  page.on("console", msg => {
    if (/Content[- ]Security[- ]Policy/i.test(msg.text())) cspViolations.push(`${page.url()}: ${msg.text()}`)
  })
  page.on("pageerror", e => cspViolations.push(`${page.url()}: script error ${e.message}`))
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true })
}

/** axe-core in the page; returns the serious and critical violations. */
async function axe(page) {
  await page.evaluate(AXE)
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }))
  for (const v of result.violations) {
    if (v.impact !== "serious" && v.impact !== "critical") axeMinor.add(`${v.id} (${v.impact})`)
  }
  axeRuns += 1
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map(n => n.target.join(" ")).slice(0, 3).join(", ")}`)
}

const axeFindings = {}
const axeMinor = new Set()
let axeRuns = 0
async function visit(page, route, name) {
  const res = await page.goto(base + route)
  assert(res.ok(), `${route} answered ${res.status()}`)
  await shot(page, name)
  axeFindings[name] = await axe(page)
}

/** Marks the page so that a reload would be noticed. */
async function mark(page) {
  await page.evaluate(() => { window.__notReloaded = true })
}
async function stillMarked(page) {
  return page.evaluate(() => window.__notReloaded === true)
}

// ---- the phone -------------------------------------------------------------------

async function phoneWritesNote(deviceToken, caseId, author, text) {
  const wsUrl = base.replace(/^http/, "ws") + `/sync?token=${encodeURIComponent(deviceToken)}`
  const adapter = new WebSocketClientAdapter(wsUrl)
  const repo = new Repo({ network: [adapter] })
  try {
    const handle = await repo.find(caseId, { signal: AbortSignal.timeout(TIMEOUT) })
    const now = Date.now()
    const key = crypto.randomUUID().replaceAll("-", "")
    handle.change(doc => {
      doc.notes[key] = { author, createdAt: now, updatedAt: now, text }
    }, { time: Math.floor(now / 1000), message: "add note" })
    // Keep the socket open until the server holds the note (the client sends its sync
    // messages throttled); closing earlier could leave the note on the "phone".
    const deadline = Date.now() + TIMEOUT
    for (;;) {
      const held = await api("GET", `/api/v1/cases/${caseId}`, { token: deviceToken })
      if (held.status === 200 && (held.body.notes ?? []).some(n => n.text === text)) break
      assert(Date.now() < deadline, `the server never got the phone's note: ${held.status}`)
      await sleep(100)
    }
  } finally {
    await repo.shutdown()
  }
}

// ---- the walk ----------------------------------------------------------------------

function inDays(days) {
  const d = new Date(Date.now() + days * 86_400_000)
  return d.toISOString().slice(0, 10)
}

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  createCoordinator()
  base = await startServer()
  console.log(`server on ${base}`)
  const login = await api("POST", "/api/v1/auth/login", { token: null, body: { email: EMAIL, password: PASSWORD } })
  assert(login.status === 200, `api login: ${JSON.stringify(login.body)}`)
  apiToken = login.body.token
  const amira = await volunteer("Amira Haddad", ["ar", "de", "fr"], ["gesundheit", "behoerden"], [1, 2, 3, 4, 5, 6, 7].map(weekday => ({ weekday, from: "08:00", to: "20:00" })))
  const olena = await volunteer("Olena Kovalenko", ["uk", "ru", "de"], ["bildung"], [{ weekday: 3, from: "08:00", to: "13:00" }])
  await volunteer("Mehmet Yılmaz", ["tr", "ku", "de"], ["arbeit"], [])
  const amiraPhone = await device(amira, "Amiras Handy")
  const olenaPhone = await device(olena, "Olenas altes Handy")

  await launch()
  const page = context.pages()[0] ?? await context.newPage()

  await check("logged out, the dashboard leads to the login", async () => {
    await page.goto(base + "/dashboard")
    assert(new URL(page.url()).pathname === "/dashboard/login", `at ${page.url()}`)
    assert(await page.getAttribute("html", "lang") === "de", "German by default")
    await shot(page, "01-login")
    axeFindings["01-login"] = await axe(page)
  })

  await check("log in", async () => {
    await page.getByLabel("E-Mail-Adresse").fill(EMAIL)
    await page.getByLabel("Passwort").fill(PASSWORD)
    await page.getByRole("button", { name: "Anmelden" }).click()
    await page.waitForURL(base + "/dashboard")
    await page.getByRole("heading", { level: 1, name: "Überblick" }).waitFor()
  })

  let requestId
  await check("create a request", async () => {
    await page.goto(base + "/dashboard/requests")
    await page.getByRole("link", { name: "Neue Anfrage" }).click()
    await page.getByLabel("Art der Einrichtung").selectOption("arztpraxis")
    await page.getByLabel("Name der Einrichtung").fill("Praxis Dr. Özdemir")
    await page.getByLabel("Kürzel der Person").fill("F.K.")
    await page.getByLabel("Thema").selectOption("gesundheit")
    await page.getByRole("checkbox", { name: "Arabisch" }).check()
    await page.getByLabel("Datum").fill(inDays(5))
    await page.getByLabel("Von (Uhrzeit)").fill("14:00")
    await page.getByLabel("Bis (Uhrzeit)").fill("15:30")
    await page.getByLabel("Stadtteil oder Ort (grob)").fill("Nordstadt")
    await page.getByLabel("Genaue Adresse").fill("Lindenstraße 3")
    await page.getByLabel("Worum geht es?").fill("Befundbesprechung, Übersetzung Arabisch")
    await shot(page, "03-request-new")
    axeFindings["03-request-new"] = await axe(page)
    await page.getByRole("button", { name: "Anfrage anlegen" }).click()
    await page.waitForURL(/\/dashboard\/requests\/[0-9a-f-]{36}/)
    requestId = new URL(page.url()).pathname.split("/").pop()
    await page.getByText("Die Anfrage ist angelegt.").waitFor()
    assert(await page.locator("dd[data-status=open]").count() === 1, "the new request is open")
  })

  await check("see the candidates with reasons", async () => {
    const rows = page.locator("#candidates tbody tr")
    const first = rows.first()
    assert((await first.getAttribute("data-volunteer")) === amira, "Amira ranks first")
    const reasons = await first.locator("ul.reasons").innerText()
    assert(reasons.includes("spricht ar") && reasons.includes("Thema gesundheit") && reasons.includes("verfügbar im Zeitfenster"), `reasons: ${reasons}`)
    const olenaReasons = await page.locator(`#candidates tr[data-volunteer="${olena}"] ul.reasons`).innerText()
    assert(olenaReasons.includes("spricht nicht ar"), `Olena: ${olenaReasons}`)
    await shot(page, "04-request-candidates")
    axeFindings["04-request-candidates"] = await axe(page)
  })

  await check("offer to the best candidate", async () => {
    for (const box of await page.locator("#candidates input[type=checkbox]").all()) await box.uncheck()
    await page.getByRole("checkbox", { name: "Amira Haddad" }).check()
    await page.getByRole("button", { name: "Ausgewählten anbieten" }).click()
    await page.getByText("Angeboten an 1 Person(en)").waitFor()
    assert(await page.locator(`#offers tr[data-volunteer="${amira}"][data-offer=offered]`).count() === 1, "Amira's offer is listed")
  })

  // Two more tabs stay open while the phone acts: the overview, later the case.
  const overview = await context.newPage()
  let caseId
  await check("the overview updates without a reload when the phone accepts", async () => {
    await overview.goto(base + "/dashboard")
    await overview.locator("html[data-live-connected=true]").waitFor()
    await mark(overview)
    assert((await overview.locator("#vergeben").innerText()).includes("(0)"), "nothing assigned yet")
    const accepted = await api("POST", `/api/v1/offers/${requestId}/accept`, { token: amiraPhone.token })
    assert(accepted.status === 200, `accept: ${JSON.stringify(accepted.body)}`)
    caseId = accepted.body.assignment.case_id
    await overview.locator("#vergeben", { hasText: "(1)" }).waitFor()
    await overview.locator(`tr[data-case="${caseId}"]`).waitFor()
    assert(await stillMarked(overview), "the overview was reloaded")
  })

  await check("the request shows who accepted", async () => {
    await page.reload()
    assert(await page.locator(`#offers tr[data-volunteer="${amira}"][data-offer=accepted]`).count() === 1, "accepted")
    assert((await page.locator("dd[data-status]").innerText()).includes("vergeben"), "assigned")
    await shot(page, "05-request-assigned")
  })

  const casePage = await context.newPage()
  const noteText = "Befund besprochen, nächster Termin in zwei Wochen."
  await check("the case page and the overview update without a reload when the phone syncs a note", async () => {
    await casePage.goto(base + `/dashboard/cases/${caseId}`)
    await casePage.locator("html[data-live-connected=true]").waitFor()
    await casePage.getByText("Noch keine Notizen.").waitFor()
    await mark(casePage)
    await mark(overview)
    const notesBefore = await overview.locator(`tr[data-case="${caseId}"] td.num`).innerText()
    assert(notesBefore.trim() === "0", `notes before: ${notesBefore}`)
    await phoneWritesNote(amiraPhone.token, caseId, amira, noteText)
    await casePage.getByText(noteText).waitFor()
    assert((await casePage.locator("article.note").innerText()).includes("Amira Haddad"), "the note names its author")
    await overview.locator(`tr[data-case="${caseId}"] td.num`, { hasText: "1" }).waitFor()
    assert(await stillMarked(casePage), "the case page was reloaded")
    assert(await stillMarked(overview), "the overview was reloaded")
    await shot(casePage, "07-case")
    axeFindings["07-case"] = await axe(casePage)
    await shot(overview, "02-overview")
    axeFindings["02-overview"] = await axe(overview)
  })
  await overview.close()
  await casePage.close()

  await check("lists of requests and cases", async () => {
    await visit(page, "/dashboard/requests", "03-requests")
    assert(await page.locator(`a[href="/dashboard/requests/${requestId}"]`).count() === 1, "the request is listed")
    await visit(page, "/dashboard/cases", "06-cases")
    assert(await page.locator(`a[href="/dashboard/cases/${caseId}"]`).count() === 1, "the case is listed")
  })

  await check("an enrollment code as text and QR code", async () => {
    await visit(page, "/dashboard/volunteers", "08-volunteers")
    await page.getByRole("link", { name: "Olena Kovalenko" }).click()
    await page.getByRole("button", { name: "Anmeldecode für ein neues Handy erstellen" }).click()
    const code = (await page.locator("#enrollment-code").innerText()).trim()
    assert(/^[0-9A-Z]{5}-[0-9A-Z]{5}$/.test(code), `code ${code}`)
    assert(await page.locator(".qr svg[role=img]").count() === 1, "a QR code")
    await shot(page, "09-volunteer-code")
    axeFindings["09-volunteer"] = await axe(page)
  })

  await check("revoke a device", async () => {
    const row = page.locator(`#devices tr[data-device="${olenaPhone.device_id}"]`)
    await row.getByRole("button", { name: "Sperren" }).click()
    await page.getByText("Das Gerät ist gesperrt.").waitFor()
    assert((await page.locator(`#devices tr[data-device="${olenaPhone.device_id}"]`).innerText()).includes("gesperrt"), "marked revoked")
    const me = await api("GET", "/api/v1/me", { token: olenaPhone.token })
    assert(me.status === 401 && me.body.error.code === "device_revoked", `me: ${JSON.stringify(me.body)}`)
    await shot(page, "10-volunteer-revoked")
  })

  await check("reports and the CSV download", async () => {
    await visit(page, "/dashboard/reports", "11-reports")
    assert(await page.locator("table[data-dimension=topic]").count() === 1, "a table by topic")
    assert(await page.locator("figure[data-chart] svg").count() === 4, "four charts")
    const text = await page.locator("table[data-dimension=topic]").innerText()
    assert(text.includes("<5"), "small cells are suppressed")
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: "Als CSV herunterladen (Excel)" }).click(),
    ])
    const file = path.join(ARTIFACTS, download.suggestedFilename())
    await download.saveAs(file)
    const bytes = fs.readFileSync(file)
    assert(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf, "UTF-8 byte order mark")
    const csv = bytes.subarray(3).toString("utf8")
    assert(csv.startsWith("Gliederung;Wert;Anfragen;davon vermittelt;neue Fälle;Stunden;Fahrzeit (Stunden)"), csv.slice(0, 200))
    assert(csv.includes("Thema;Gesundheit;<5;<5;<5;<5;<5"), csv)
  })

  await check("notifications: the card answers clearly and the service worker shows a pushed request", async () => {
    await context.grantPermissions(["notifications"], { origin: base })
    const cdp = await context.newCDPSession(page)
    const registrations = new Map()
    const activated = new Set()
    cdp.on("ServiceWorker.workerRegistrationUpdated", e => {
      for (const r of e.registrations) registrations.set(r.registrationId, r)
    })
    cdp.on("ServiceWorker.workerVersionUpdated", e => {
      for (const v of e.versions) if (v.status === "activated") activated.add(v.registrationId)
    })
    await cdp.send("ServiceWorker.enable")
    await page.goto(base + "/dashboard")
    const card = page.locator("#notifications")
    await card.getByRole("heading", { name: "Benachrichtigungen auf diesem Gerät" }).waitFor()
    await card.getByRole("button", { name: "Benachrichtigungen einschalten" }).click()
    // Without a connection to the browser's push service (none here) the subscription
    // never completes; the card must say so and give the button back, not spin forever.
    // With one, it says it is on. Either way: a final answer.
    await page.waitForFunction(() => {
      const s = document.getElementById("notify-status").textContent
      return s && !s.includes("Wird eingeschaltet")
    }, null, { timeout: 30_000 })
    const said = await page.locator("#notify-status").innerText()
    assert(/eingeschaltet/.test(said), `status: ${said}`)
    assert(await card.getByRole("button", { name: "Benachrichtigungen einschalten" }).isEnabled() ||
      await card.getByRole("button", { name: "Benachrichtigungen ausschalten" }).isVisible(), "a button to act on")
    await shot(page, "14-notifications")

    // The worker registered on the way; a push as the server sends it is shown in German
    // with topic, languages and time, and leads to the request.
    const reg = [...registrations.values()].find(r => r.scopeURL === base + "/dashboard/" && !r.isDeleted)
    assert(reg, `no service worker registered for /dashboard/: ${JSON.stringify([...registrations.values()])}`)
    // A push reaches only an activated worker; the card may have answered before that.
    const deadline = Date.now() + TIMEOUT
    while (!activated.has(reg.registrationId)) {
      assert(Date.now() < deadline, `the service worker never activated (card said: ${said})`)
      await sleep(50)
    }
    const deliver = data => cdp.send("ServiceWorker.deliverPushMessage", { origin: base, registrationId: reg.registrationId, data })
    const shown = () => page.evaluate(async () => {
      const r = await navigator.serviceWorker.getRegistration("/dashboard/")
      return (await r.getNotifications()).map(n => ({ title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url }))
    })
    await deliver(JSON.stringify({ v: 1, kind: "accepted", request_id: requestId, topic: "gesundheit", languages: ["ar", "de"],
      window_start: Date.UTC(2027, 0, 13, 13, 0), window_end: Date.UTC(2027, 0, 13, 14, 0) }))
    let notes = []
    while (!(notes = await shown()).some(n => n.tag === `accepted:${requestId}`)) {
      assert(Date.now() < deadline, `no notification: ${JSON.stringify(notes)} (card said: ${said})`)
      await sleep(100)
    }
    const n = notes.find(n => n.tag === `accepted:${requestId}`)
    assert(n.title === "Anfrage angenommen", `title: ${n.title}`)
    assert(n.body.includes("Gesundheit") && n.body.includes("Sprachen: ar, de") && n.body.includes("14:00"), `body: ${n.body}`)
    assert(n.url === `/dashboard/requests/${requestId}`, `url: ${n.url}`)
    // Something unreadable still gives a neutral notice (a push must always show one).
    await deliver("kein JSON")
    while (!(notes = await shown()).some(n => n.title === "Lotse")) {
      assert(Date.now() < deadline, `no neutral notification: ${JSON.stringify(notes)}`)
      await sleep(100)
    }
    await cdp.detach()
    await page.goto(base + "/dashboard/reports")
  })

  await check("switch to English", async () => {
    await page.getByRole("link", { name: "English" }).click()
    await page.getByRole("heading", { level: 1, name: "Reports" }).waitFor()
    assert(await page.getAttribute("html", "lang") === "en", "lang=en")
    await shot(page, "12-reports-en")
    await page.goto(base + "/dashboard")
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor()
    assert(await page.getAttribute("html", "lang") === "en", "the choice stays")
    await shot(page, "13-overview-en")
    axeFindings["13-overview-en"] = await axe(page)
    await page.getByRole("link", { name: "Deutsch" }).click()
    await page.getByRole("heading", { level: 1, name: "Überblick" }).waitFor()
  })

  await check("keyboard only: skip link and visible focus", async () => {
    await page.goto(base + "/dashboard/requests")
    await page.keyboard.press("Tab")
    const skip = await page.evaluate(() => ({ text: document.activeElement.textContent, outline: getComputedStyle(document.activeElement).outlineStyle }))
    assert(skip.text.includes("Zum Inhalt springen"), `first tab stop: ${skip.text}`)
    assert(skip.outline !== "none", "focus is visible")
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    const next = await page.evaluate(() => document.activeElement.textContent)
    assert(next.includes("Neue Anfrage"), `after skipping: ${next}`)
  })

  await check("axe-core: no serious or critical violations on the main pages", async () => {
    const bad = Object.entries(axeFindings).filter(([, v]) => v.length)
    assert(Object.keys(axeFindings).length >= 10, `only ${Object.keys(axeFindings).length} pages checked`)
    assert(!bad.length, bad.map(([k, v]) => `${k}:\n  ${v.join("\n  ")}`).join("\n"))
    console.log(`     axe ran ${axeRuns} times on ${Object.keys(axeFindings).length} pages; below serious: ${[...axeMinor].join(", ") || "none"}`)
  })

  await check("log out everywhere", async () => {
    await page.getByRole("button", { name: "Überall abmelden" }).click()
    await page.waitForURL(base + "/dashboard/login")
    const me = await api("GET", "/api/v1/me")
    assert(me.status === 401, "the API session ended too")
  })

  await check("no page broke its Content-Security-Policy or threw", async () => {
    assert(!cspViolations.length, cspViolations.join("\n"))
  })
}

let crashed = null
try {
  await main()
} catch (e) {
  crashed = e
  results.push({ name: "setup", ok: false, error: e })
  console.log(`FAIL setup: ${e?.stack ?? e}`)
} finally {
  if (context) await context.close().catch(() => {})
  await stopServer()
  fs.rmSync(userData, { recursive: true, force: true })
  fs.rmSync(work, { recursive: true, force: true })
}
const passed = results.filter(r => r.ok).length
const failed = results.length - passed
console.log(`screenshots in ${ARTIFACTS}`)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed || crashed ? 1 : 0)
