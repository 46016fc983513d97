#!/usr/bin/env node
// The coordinators' dashboard in a real headless Chromium (issues 6 and 11).
//
// Starts the real `lotse-server` binary on 127.0.0.1:0 with a fresh SQLite database and
// walks through the dashboard as a coordinator would: log in, create a request, see the
// candidates, offer; a phone (an automerge-repo client with a device token) accepts and
// syncs a note, and the open overview and case pages update without a reload; revoke a
// device; open the reports and download the CSV; notifications; switch to English.
//
// Every check is independent of the others: it gets its own organisation (coordinator,
// volunteers, phones, requests made through the REST API) and its own browser with a
// fresh profile, so one failure is reported once and the rest still say something true.
// Every page a check opens is screenshotted into tests/artifacts/browser/, checked with
// axe-core (no serious or critical violations) and watched for Content-Security-Policy
// violations and script errors, which fail that check.
//
// Environment: LOTSE_SERVER_BIN (default ../../target/debug/lotse-server),
// CHROMIUM (default /usr/bin/chromium), ARTIFACTS (default ../artifacts/browser),
// ONLY (a substring: run only the checks whose name contains it).
// Ends with the line `N passed, M failed`; exits 1 on any failure.

import { spawn, spawnSync } from "node:child_process"
import crypto from "node:crypto"
import fs from "node:fs"
import http from "node:http"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { createRequire } from "node:module"

import { chromium } from "playwright-core"
import { ImmutableString, getBackend } from "@automerge/automerge"
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const BIN = process.env.LOTSE_SERVER_BIN ?? path.resolve(here, "../../target/debug/lotse-server")
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium"
const ARTIFACTS = process.env.ARTIFACTS ?? path.resolve(here, "../artifacts/browser")
const ONLY = process.env.ONLY ?? ""
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8")
const TIMEOUT = 20_000
// A check that is still running after this long has failed; its browser is closed so
// that nothing it left behind can reach the next check.
const CHECK_TIMEOUT = 120_000

const PASSWORD = "ein langes Test-Passwort 2026"

const sleep = ms => new Promise(r => setTimeout(r, ms))

function assert(cond, message) {
  if (!cond) throw new Error(message)
}

/** Polls `probe` until it returns something truthy; fails with `describe()` at the deadline. */
async function until(probe, describe, { timeout = TIMEOUT, every = 100 } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() >= deadline) throw new Error(await describe())
    await sleep(every)
  }
}

// ---- the server ------------------------------------------------------------------

const work = fs.mkdtempSync(path.join(os.tmpdir(), "lotse-browser-"))
const dbUrl = `sqlite://${work}/lotse.db`
let server
let base

function startServer() {
  return new Promise((resolve, reject) => {
    // Loopback push endpoints: the app's check runs a push service stand-in on 127.0.0.1.
    server = spawn(BIN, ["serve", "--bind", "127.0.0.1:0", "--database-url", dbUrl, "--allow-insecure-push-endpoints", "--two-factor-optional"], {
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

async function api(method, route, { token, body } = {}) {
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

function inDays(days) {
  const d = new Date(Date.now() + days * 86_400_000)
  return d.toISOString().slice(0, 10)
}

let networks = 0

/**
 * A fresh organisation of its own: a coordinator (made with `create-coordinator`, as an
 * operator would), three volunteers and a phone each for Amira and Olena.
 */
async function network() {
  const n = ++networks
  const email = `koordination${n}@teststadt.example`
  const r = spawnSync(BIN, ["create-coordinator", "--org", `Integrationslotsen Teststadt ${n}`, "--email", email,
    "--name", "Dana Koordination", "--password-stdin", "--database-url", dbUrl],
  { input: PASSWORD + "\n", encoding: "utf8", env: { ...process.env, RUST_LOG: "warn" } })
  if (r.status !== 0) throw new Error(`create-coordinator failed: ${r.stderr}${r.stdout}`)
  const login = await api("POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } })
  assert(login.status === 200, `api login: ${JSON.stringify(login.body)}`)
  const net = { email, token: login.body.token }
  net.api = (method, route, opts = {}) => api(method, route, { token: net.token, ...opts })

  async function volunteer(display_name, languages, topics, availability) {
    const v = await net.api("POST", "/api/v1/volunteers", { body: { display_name, languages, topics, availability, pledge_signed_on: "2025-09-12" } })
    assert(v.status === 201, `volunteer: ${JSON.stringify(v.body)}`)
    return v.body.id
  }
  async function device(volunteerId, device_name) {
    const code = await net.api("POST", `/api/v1/volunteers/${volunteerId}/enrollment-codes`)
    assert(code.status === 201, `code: ${JSON.stringify(code.body)}`)
    const enrolled = await api("POST", "/api/v1/devices/enroll", { body: { code: code.body.code, device_name } })
    assert(enrolled.status === 201, `enroll: ${JSON.stringify(enrolled.body)}`)
    return enrolled.body
  }
  net.amira = await volunteer("Amira Haddad", ["ar", "de", "fr"], ["gesundheit", "behoerden"], [1, 2, 3, 4, 5, 6, 7].map(weekday => ({ weekday, from: "08:00", to: "20:00" })))
  net.olena = await volunteer("Olena Kovalenko", ["uk", "ru", "de"], ["bildung"], [{ weekday: 3, from: "08:00", to: "13:00" }])
  net.mehmet = await volunteer("Mehmet Yılmaz", ["tr", "ku", "de"], ["arbeit"], [])
  net.amiraPhone = await device(net.amira, "Amiras Handy")
  net.olenaPhone = await device(net.olena, "Olenas altes Handy")

  /** A request of a doctor's practice for Arabic, five days ahead (14:00 or 15:00 local). */
  net.request = async () => {
    const day = inDays(5)
    const created = await net.api("POST", "/api/v1/requests", { body: {
      institution_kind: "arztpraxis", institution_name: "Praxis Dr. Özdemir", person_label: "F.K.",
      topic: "gesundheit", languages: ["ar"], starts_at: `${day}T13:00:00Z`, ends_at: `${day}T14:30:00Z`,
      place_area: "Nordstadt", place_address: "Lindenstraße 3", description: "Befundbesprechung, Übersetzung Arabisch",
    } })
    assert(created.status === 201, `request: ${JSON.stringify(created.body)}`)
    return created.body.id
  }
  net.offer = async (requestId, volunteerIds) => {
    const offered = await net.api("POST", `/api/v1/requests/${requestId}/offer`, { body: { volunteer_ids: volunteerIds } })
    assert(offered.status === 200 || offered.status === 201, `offer: ${offered.status} ${JSON.stringify(offered.body)}`)
  }
  net.accept = async (requestId, phone = net.amiraPhone) => {
    const accepted = await api("POST", `/api/v1/offers/${requestId}/accept`, { token: phone.token })
    assert(accepted.status === 200, `accept: ${JSON.stringify(accepted.body)}`)
    return accepted.body.assignment.case_id
  }
  /** A case of Amira's (from a request she accepted) with a coordinator's note. */
  net.caseWithNote = async text => {
    const { caseId } = await net.assignedCase()
    const added = await net.api("POST", `/api/v1/cases/${caseId}/notes`, { body: { text } })
    assert(added.status === 201, `note: ${JSON.stringify(added.body)}`)
    return caseId
  }
  /** A request Amira accepted: returns its id and the id of the case it became. */
  net.assignedCase = async () => {
    const requestId = await net.request()
    await net.offer(requestId, [net.amira])
    const caseId = await net.accept(requestId)
    return { requestId, caseId }
  }
  return net
}

// ---- the phone -------------------------------------------------------------------

/** Amira's phone: the stock automerge-repo client with her device token, for `use`. */
async function withPhone(net, use) {
  const deviceToken = net.amiraPhone.token
  const wsUrl = base.replace(/^http/, "ws") + `/sync?token=${encodeURIComponent(deviceToken)}`
  const repo = new Repo({ network: [new WebSocketClientAdapter(wsUrl)] })
  try {
    return await use(repo, deviceToken)
  } finally {
    await repo.shutdown()
  }
}

/**
 * Amira's phone makes one change to the case and keeps its socket open until the server's
 * copy satisfies `held` (the client sends its sync messages throttled; closing earlier
 * could leave the change on the "phone").
 */
async function phoneChanges(net, caseId, message, edit, held) {
  await withPhone(net, async (repo, deviceToken) => {
    const handle = await repo.find(caseId, { signal: AbortSignal.timeout(TIMEOUT) })
    const now = Date.now()
    handle.change(doc => edit(doc, now), { time: Math.floor(now / 1000), message })
    await until(async () => {
      const c = await api("GET", `/api/v1/cases/${caseId}`, { token: deviceToken })
      return c.status === 200 && held(c.body)
    }, () => `the server never got the phone's ${message}`)
  })
}

/**
 * A phone on lotse-core (its Python bindings, built by run.sh into LOTSE_CORE_PYTHON)
 * enrolls with `code`, syncs, sets the note's text to `text` and syncs again.
 */
async function lotseCorePhoneEdits(code, caseId, noteId, text) {
  const dir = process.env.LOTSE_CORE_PYTHON
  assert(dir, "LOTSE_CORE_PYTHON is not set (run.sh builds lotse-core's Python bindings)")
  const phone = spawn("python3", [path.join(here, "phone_edit.py"), base, code, caseId, noteId, text], {
    env: { ...process.env, PYTHONPATH: dir },
    stdio: ["ignore", "pipe", "pipe"],
  })
  let out = ""
  phone.stdout.on("data", c => { out += c })
  phone.stderr.on("data", c => { out += c })
  const status = await new Promise(resolve => phone.on("exit", resolve))
  assert(status === 0, `the lotse-core phone failed (${status}): ${out}`)
}

/** protocol's published shape of a case (`protocol/schema/case.json`). */
const CASE_SHAPE = JSON.parse(fs.readFileSync(path.resolve(here, "../../protocol/schema/case.json"), "utf8"))

/**
 * Where the case as the server holds it leaves protocol's shape: each field that shape
 * does not name, or that has another automerge type than it says (text where protocol
 * reads a plain string, a float where it reads an integer). A map whose shape is `{"*":
 * ...}` is keyed by entry ids.
 */
async function shapeMisfits(net, caseId) {
  return withPhone(net, async repo => {
    const doc = (await repo.find(caseId, { signal: AbortSignal.timeout(TIMEOUT) })).doc()
    const backend = getBackend(doc)
    const misfits = []
    const check = (type, value, expected, at) => {
      if (expected === undefined) misfits.push(`${at}: not in the schema`)
      else if (type === "map") {
        if (typeof expected !== "object" || Array.isArray(expected)) misfits.push(`${at}: a map where the schema has ${JSON.stringify(expected)}`)
        else walk(value, expected, at)
      } else if (type === "list") {
        if (!Array.isArray(expected)) misfits.push(`${at}: a list where the schema has ${JSON.stringify(expected)}`)
        else for (let i = 0; i < backend.length(value); i++) check(...backend.getWithType(value, i), expected[0], `${at}[]`)
      } else if (type !== expected) misfits.push(`${at}: "${type}" where the schema has "${expected}"`)
    }
    const walk = (obj, allowed, at) => {
      for (const key of backend.keys(obj)) {
        const field = "*" in allowed ? "*" : key
        check(...backend.getWithType(obj, key), allowed[field], `${at}/${field}`)
      }
    }
    walk("_root", CASE_SHAPE, "")
    return misfits
  })
}

async function phoneWritesNote(net, caseId, text) {
  const key = crypto.randomUUID().replaceAll("-", "")
  await phoneChanges(net, caseId, "add note", (doc, now) => {
    doc.notes[key] = { author: new ImmutableString(net.amira), createdAt: now, updatedAt: now, text }
  }, c => (c.notes ?? []).some(n => n.text === text))
}

// ---- one check: its own browser, its own findings ------------------------------------

class Trial {
  constructor(name) {
    this.name = name
    this.contexts = []
    this.dirs = []
    this.violations = []
    this.axeFindings = {}
    this.axeMinor = new Set()
  }

  /** A browser of its own with a fresh profile (persistent, so service workers and push behave as in a real profile). */
  async browser() {
    const userData = fs.mkdtempSync(path.join(os.tmpdir(), "lotse-chromium-"))
    this.dirs.push(userData)
    const context = await chromium.launchPersistentContext(userData, {
      executablePath: CHROMIUM,
      headless: true,
      locale: "de-DE",
      viewport: { width: 1280, height: 900 },
      acceptDownloads: true,
      args: ["--lang=de-DE", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    })
    this.contexts.push(context)
    context.setDefaultTimeout(TIMEOUT)
    const watch = page => {
      page.on("console", msg => {
        if (/Content[- ]Security[- ]Policy/i.test(msg.text())) this.violations.push(`${page.url()}: ${msg.text()}`)
      })
      page.on("pageerror", e => this.violations.push(`${page.url()}: script error ${e.message}`))
    }
    context.on("page", watch)
    for (const p of context.pages()) watch(p)
    return context
  }

  /** A page in a browser of its own where the network's coordinator has logged in. */
  async loggedIn(net) {
    const context = await this.browser()
    const page = context.pages()[0] ?? await context.newPage()
    await page.goto(base + "/dashboard/login")
    await page.getByLabel("E-Mail-Adresse").fill(net.email)
    await page.getByLabel("Passwort").fill(PASSWORD)
    await page.getByRole("button", { name: "Anmelden" }).click()
    await page.waitForURL(base + "/dashboard")
    await page.getByRole("heading", { level: 1, name: "Überblick" }).waitFor()
    return page
  }

  async shot(page, name) {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true })
  }

  /** axe-core in the page; serious and critical violations fail the check at its end. */
  async axe(page, name) {
    await page.evaluate(AXE)
    const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }))
    for (const v of result.violations) {
      if (v.impact !== "serious" && v.impact !== "critical") this.axeMinor.add(`${v.id} (${v.impact})`)
    }
    this.axeFindings[name] = result.violations
      .filter(v => v.impact === "serious" || v.impact === "critical")
      .map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map(n => n.target.join(" ")).slice(0, 3).join(", ")}`)
  }

  async look(page, name) {
    await this.shot(page, name)
    await this.axe(page, name)
  }

  async visit(page, route, name) {
    const res = await page.goto(base + route)
    assert(res.ok(), `${route} answered ${res.status()}`)
    await this.look(page, name)
  }

  /** What every check must also hold: no CSP violation, no script error, no serious axe finding. */
  verdict() {
    assert(!this.violations.length, `Content-Security-Policy or script errors:\n${this.violations.join("\n")}`)
    const bad = Object.entries(this.axeFindings).filter(([, v]) => v.length)
    assert(!bad.length, `axe-core:\n${bad.map(([k, v]) => `${k}:\n  ${v.join("\n  ")}`).join("\n")}`)
  }

  async failureShots() {
    let k = 0
    for (const context of this.contexts) {
      for (const page of context.pages()) {
        const file = `FAIL-${this.name.replace(/[^a-z0-9]+/gi, "-").slice(0, 40)}-${++k}`
        await page.screenshot({ path: path.join(ARTIFACTS, `${file}.png`), fullPage: true, timeout: 5_000 }).catch(() => {})
      }
    }
  }

  async close() {
    for (const context of this.contexts) await context.close().catch(() => {})
    for (const dir of this.dirs) fs.rmSync(dir, { recursive: true, force: true })
  }
}

const results = []
let axePages = 0
const axeMinor = new Set()

async function check(name, fn) {
  if (ONLY && !name.includes(ONLY)) return
  const started = Date.now()
  const t = new Trial(name)
  let timer
  try {
    await Promise.race([
      fn(t),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`still running after ${CHECK_TIMEOUT} ms`)), CHECK_TIMEOUT) }),
    ])
    t.verdict()
    results.push({ name, ok: true })
    console.log(`ok   ${name} (${Date.now() - started} ms)`)
  } catch (e) {
    results.push({ name, ok: false, error: e })
    console.log(`FAIL ${name} (${Date.now() - started} ms): ${e?.stack ?? e}`)
    await t.failureShots()
  } finally {
    clearTimeout(timer)
    axePages += Object.keys(t.axeFindings).length
    for (const m of t.axeMinor) axeMinor.add(m)
    await t.close()
  }
}

/** Marks the page so that a reload would be noticed. */
async function mark(page) {
  await page.evaluate(() => { window.__notReloaded = true })
}
async function stillMarked(page) {
  return page.evaluate(() => window.__notReloaded === true)
}

/**
 * A push service stand-in on loopback for one subscription: its endpoint and keys (a P-256
 * key pair and an auth secret made here, as a browser would), and `next()`, the next push
 * the server delivers, decrypted (RFC 8291, aes128gcm, a single record) with those keys:
 * a check that shares no code with the server's encryption.
 */
async function pushStandIn() {
  const ecdh = crypto.createECDH("prime256v1")
  const publicKey = ecdh.generateKeys()
  const auth = crypto.randomBytes(16)
  const received = []
  const service = http.createServer((req, res) => {
    const chunks = []
    req.on("data", c => chunks.push(c))
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) })
      res.writeHead(201).end()
    })
  })
  await new Promise(resolve => service.listen(0, "127.0.0.1", resolve))
  const hkdf = (ikm, salt, info, length) => Buffer.from(crypto.hkdfSync("sha256", ikm, salt, info, length))
  function decrypt({ headers, body }) {
    assert(headers["content-encoding"] === "aes128gcm", `content-encoding: ${headers["content-encoding"]}`)
    const salt = body.subarray(0, 16)
    const idLength = body[20]
    const serverKey = body.subarray(21, 21 + idLength)
    const sealed = body.subarray(21 + idLength)
    const shared = ecdh.computeSecret(serverKey)
    const ikm = hkdf(shared, auth, Buffer.concat([Buffer.from("WebPush: info\0"), publicKey, serverKey]), 32)
    const key = hkdf(ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16)
    const nonce = hkdf(ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12)
    const decipher = crypto.createDecipheriv("aes-128-gcm", key, nonce)
    decipher.setAuthTag(sealed.subarray(sealed.length - 16))
    const padded = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()])
    let end = padded.length - 1
    while (end > 0 && padded[end] === 0) end -= 1
    assert(padded[end] === 2, "the last record ends with its delimiter")
    return padded.subarray(0, end).toString("utf8")
  }
  return {
    subscription: {
      endpoint: `http://127.0.0.1:${service.address().port}/push/app`,
      keys: { p256dh: publicKey.toString("base64url"), auth: auth.toString("base64url") },
    },
    async next() {
      const push = await until(() => received.shift(), () => "no push reached the stand-in")
      return decrypt(push)
    },
    close: () => new Promise(resolve => service.close(resolve)),
  }
}

/**
 * Watches the service workers of `page`'s browser (call before the page loads the one
 * wanted): `ready(scope)` waits until the worker of `base + scope` is activated and
 * running, and gives `deliver(data)`, which hands it a push as a browser's push service
 * would, and `shown()`, what it asked to show and how that went.
 *
 * What the worker shows is read inside the worker, from the calls it makes to
 * `showNotification` and their outcome. `getNotifications()` is no witness here: Chromium
 * answers it by reconciling its notification database with what the platform reports as
 * on screen, and in headless Chromium a notification whose display is still on its way
 * counts as closed and is dropped from the list for good (seen once in ten runs: the
 * worker got the push and `showNotification` resolved, yet the list stayed empty; issue
 * 11). A push reaches only an activated worker.
 */
async function pushWitness(page) {
  const context = page.context()
  await context.grantPermissions(["notifications"], { origin: base })
  const cdp = await context.newCDPSession(page)
  const registrations = new Map()
  const versions = new Map()
  cdp.on("ServiceWorker.workerRegistrationUpdated", e => {
    for (const r of e.registrations) registrations.set(r.registrationId, r)
  })
  cdp.on("ServiceWorker.workerVersionUpdated", e => {
    for (const v of e.versions) versions.set(v.versionId, v)
  })
  await cdp.send("ServiceWorker.enable")
  async function ready(scope, context_ = "") {
    const reg = await until(
      () => [...registrations.values()].find(r => r.scopeURL === base + scope && !r.isDeleted &&
        [...versions.values()].some(v => v.registrationId === r.registrationId && v.status === "activated")),
      () => `no activated service worker for ${scope}${context_}: ${JSON.stringify([...registrations.values()])} ${JSON.stringify([...versions.values()])}`)
    const worker = await until(() => context.serviceWorkers().find(w => w.url().startsWith(base + scope)),
      () => `no running service worker: ${JSON.stringify(context.serviceWorkers().map(w => w.url()))}`)
    await worker.evaluate(() => {
      const reg = self.registration
      const show = reg.showNotification.bind(reg)
      self.__shown = []
      reg.showNotification = (title, options = {}) => {
        const entry = { title, body: options.body, tag: options.tag, data: options.data, outcome: "pending" }
        self.__shown.push(entry)
        return show(title, options).then(
          r => { entry.outcome = "shown"; return r },
          e => { entry.outcome = `refused: ${e}`; throw e })
      }
    })
    return {
      deliver: data => cdp.send("ServiceWorker.deliverPushMessage", { origin: base, registrationId: reg.registrationId, data }),
      shown: () => worker.evaluate(() => self.__shown),
    }
  }
  return { cdp, ready }
}

/**
 * Amira's new device: the volunteers' app in a browser of its own, enrolled by the link
 * in a fresh code's QR code. `before(page)` runs before the app first loads (to watch its
 * service worker from the start).
 */
async function enrolledApp(t, net, before = async () => {}) {
  const code = await net.api("POST", `/api/v1/volunteers/${net.amira}/enrollment-codes`)
  assert(code.status === 201, `code: ${JSON.stringify(code.body)}`)
  const context = await t.browser()
  const page = context.pages()[0] ?? await context.newPage()
  const watched = await before(page)
  await page.goto(`${base}/app/#code=${code.body.code}`)
  await page.getByRole("button", { name: "Anmelden" }).click()
  return { context, page, watched }
}

// ---- the checks --------------------------------------------------------------------

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true })
  base = await startServer()
  console.log(`server on ${base}`)

  await check("logged out, the dashboard leads to the login", async t => {
    const context = await t.browser()
    const page = context.pages()[0] ?? await context.newPage()
    await page.goto(base + "/dashboard")
    assert(new URL(page.url()).pathname === "/dashboard/login", `at ${page.url()}`)
    assert(await page.getAttribute("html", "lang") === "de", "German by default")
    await t.look(page, "01-login")
  })

  await check("log in", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    await t.look(page, "02-overview-empty")
  })

  await check("create a request", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
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
    await t.look(page, "03-request-new")
    await page.getByRole("button", { name: "Anfrage anlegen" }).click()
    await page.waitForURL(/\/dashboard\/requests\/[0-9a-f-]{36}/)
    await page.getByText("Die Anfrage ist angelegt.").waitFor()
    assert(await page.locator("dd[data-status=open]").count() === 1, "the new request is open")
    const requestId = new URL(page.url()).pathname.split("/").pop()
    const held = await net.api("GET", `/api/v1/requests/${requestId}`)
    assert(held.status === 200 && held.body.topic === "gesundheit", `the API knows it: ${JSON.stringify(held.body)}`)
  })

  await check("see the candidates with reasons", async t => {
    const net = await network()
    const requestId = await net.request()
    const page = await t.loggedIn(net)
    await page.goto(base + `/dashboard/requests/${requestId}`)
    const first = page.locator("#candidates tbody tr").first()
    assert((await first.getAttribute("data-volunteer")) === net.amira, "Amira ranks first")
    const reasons = await first.locator("ul.reasons").innerText()
    assert(reasons.includes("spricht ar") && reasons.includes("Thema gesundheit") && reasons.includes("verfügbar im Zeitfenster"), `reasons: ${reasons}`)
    const olenaReasons = await page.locator(`#candidates tr[data-volunteer="${net.olena}"] ul.reasons`).innerText()
    assert(olenaReasons.includes("spricht nicht ar"), `Olena: ${olenaReasons}`)
    await t.look(page, "04-request-candidates")
  })

  await check("offer to the best candidate", async t => {
    const net = await network()
    const requestId = await net.request()
    const page = await t.loggedIn(net)
    await page.goto(base + `/dashboard/requests/${requestId}`)
    for (const box of await page.locator("#candidates input[type=checkbox]").all()) await box.uncheck()
    await page.getByRole("checkbox", { name: "Amira Haddad" }).check()
    await page.getByRole("button", { name: "Ausgewählten anbieten" }).click()
    await page.getByText("Angeboten an 1 Person(en)").waitFor()
    assert(await page.locator(`#offers tr[data-volunteer="${net.amira}"][data-offer=offered]`).count() === 1, "Amira's offer is listed")
    const offers = await api("GET", "/api/v1/offers", { token: net.amiraPhone.token })
    assert(offers.status === 200 && JSON.stringify(offers.body).includes(requestId), `Amira's phone sees the offer: ${JSON.stringify(offers.body)}`)
  })

  await check("the overview updates without a reload when the phone accepts", async t => {
    const net = await network()
    const requestId = await net.request()
    await net.offer(requestId, [net.amira])
    const overview = await t.loggedIn(net)
    await overview.locator("html[data-live-connected=true]").waitFor()
    await mark(overview)
    assert((await overview.locator("#vergeben").innerText()).includes("(0)"), "nothing assigned yet")
    const caseId = await net.accept(requestId)
    await overview.locator("#vergeben", { hasText: "(1)" }).waitFor()
    await overview.locator(`tr[data-case="${caseId}"]`).waitFor()
    assert(await stillMarked(overview), "the overview was reloaded")
  })

  await check("the request shows who accepted", async t => {
    const net = await network()
    const { requestId } = await net.assignedCase()
    const page = await t.loggedIn(net)
    await page.goto(base + `/dashboard/requests/${requestId}`)
    assert(await page.locator(`#offers tr[data-volunteer="${net.amira}"][data-offer=accepted]`).count() === 1, "accepted")
    assert((await page.locator("dd[data-status]").innerText()).includes("vergeben"), "assigned")
    await t.look(page, "05-request-assigned")
  })

  await check("the case page and the overview update without a reload when the phone syncs a note", async t => {
    const net = await network()
    const { caseId } = await net.assignedCase()
    const overview = await t.loggedIn(net)
    const casePage = await overview.context().newPage()
    await casePage.goto(base + `/dashboard/cases/${caseId}`)
    await casePage.locator("html[data-live-connected=true]").waitFor()
    await casePage.getByText("Noch keine Notizen.").waitFor()
    await overview.locator("html[data-live-connected=true]").waitFor()
    await mark(casePage)
    await mark(overview)
    const notesBefore = await overview.locator(`tr[data-case="${caseId}"] td.num`).innerText()
    assert(notesBefore.trim() === "0", `notes before: ${notesBefore}`)
    const noteText = "Befund besprochen, nächster Termin in zwei Wochen."
    await phoneWritesNote(net, caseId, noteText)
    await casePage.getByText(noteText).waitFor()
    assert((await casePage.locator("article.note").innerText()).includes("Amira Haddad"), "the note names its author")
    await overview.locator(`tr[data-case="${caseId}"] td.num`, { hasText: "1" }).waitFor()
    assert(await stillMarked(casePage), "the case page was reloaded")
    assert(await stillMarked(overview), "the overview was reloaded")
    await t.look(casePage, "07-case")
    await t.look(overview, "02-overview")
  })

  await check("lists of requests and cases", async t => {
    const net = await network()
    const { requestId, caseId } = await net.assignedCase()
    const page = await t.loggedIn(net)
    await t.visit(page, "/dashboard/requests", "03-requests")
    assert(await page.locator(`a[href="/dashboard/requests/${requestId}"]`).count() === 1, "the request is listed")
    await t.visit(page, "/dashboard/cases", "06-cases")
    assert(await page.locator(`a[href="/dashboard/cases/${caseId}"]`).count() === 1, "the case is listed")
  })

  await check("an enrollment code as text and QR code", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    await t.visit(page, "/dashboard/volunteers", "08-volunteers")
    await page.getByRole("link", { name: "Olena Kovalenko" }).click()
    await page.getByRole("button", { name: "Anmeldecode für ein neues Handy erstellen" }).click()
    const code = (await page.locator("#enrollment-code").innerText()).trim()
    assert(/^[0-9A-Z]{5}-[0-9A-Z]{5}$/.test(code), `code ${code}`)
    assert(await page.locator(".qr svg[role=img]").count() === 1, "a QR code")
    assert((await page.locator("main").innerText()).includes(`/app/#code=${code}`), "the QR code opens the volunteers' app with the code")
    await t.look(page, "09-volunteer-code")
    const enrolled = await api("POST", "/api/v1/devices/enroll", { body: { code, device_name: "Olenas neues Handy" } })
    assert(enrolled.status === 201, `the code enrolls a phone: ${JSON.stringify(enrolled.body)}`)
  })

  await check("revoke a device", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    await page.goto(base + `/dashboard/volunteers/${net.olena}`)
    const row = page.locator(`#devices tr[data-device="${net.olenaPhone.device_id}"]`)
    await row.getByRole("link", { name: /Sperren/ }).click()
    // Before revoking: what the phone may hold, for the assessment of a lost phone.
    await page.locator("#exposure").waitFor()
    await page.getByRole("button", { name: "Als verloren sperren" }).click()
    await page.getByText("Das Gerät kann nichts mehr synchronisieren").waitFor()
    await page.goto(base + `/dashboard/volunteers/${net.olena}`)
    assert((await page.locator(`#devices tr[data-device="${net.olenaPhone.device_id}"]`).innerText()).includes("gesperrt"), "marked revoked")
    const me = await api("GET", "/api/v1/me", { token: net.olenaPhone.token })
    assert(me.status === 401 && me.body.error.code === "device_revoked", `me: ${JSON.stringify(me.body)}`)
    const amira = await api("GET", "/api/v1/me", { token: net.amiraPhone.token })
    assert(amira.status === 200, `another phone keeps working: ${JSON.stringify(amira.body)}`)
    await t.shot(page, "10-volunteer-revoked")
  })

  await check("reports and the CSV download", async t => {
    const net = await network()
    await net.assignedCase()
    const page = await t.loggedIn(net)
    await t.visit(page, "/dashboard/reports", "11-reports")
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

  await check("notifications: the card answers clearly and the service worker shows a pushed request", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    const push = await pushWitness(page)
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
    await t.shot(page, "14-notifications")

    // The worker registered on the way; a push as the server sends it is shown in German
    // with topic, languages and time, and leads to the request.
    const { deliver, shown } = await push.ready("/dashboard/", ` (card said: ${said})`)
    const requestId = crypto.randomUUID()
    await deliver(JSON.stringify({ v: 1, kind: "accepted", request_id: requestId, topic: "gesundheit", languages: ["ar", "de"],
      window_start: Date.UTC(2027, 0, 13, 13, 0), window_end: Date.UTC(2027, 0, 13, 14, 0) }))
    let notes = []
    const n = await until(async () => (notes = await shown()).find(n => n.tag === `accepted:${requestId}` && n.outcome !== "pending"),
      () => `no notification: ${JSON.stringify(notes)} (card said: ${said})`)
    assert(n.outcome === "shown", `Chromium did not show it: ${n.outcome}`)
    assert(n.title === "Anfrage angenommen", `title: ${n.title}`)
    assert(n.body.includes("Gesundheit") && n.body.includes("Sprachen: ar, de") && n.body.includes("14:00"), `body: ${n.body}`)
    assert(n.data?.url === `/dashboard/requests/${requestId}`, `url: ${JSON.stringify(n.data)}`)
    // Something unreadable still gives a neutral notice (a push must always show one).
    await deliver("kein JSON")
    const neutral = await until(async () => (notes = await shown()).find(n => n.title === "Lotse" && n.outcome !== "pending"),
      () => `no neutral notification: ${JSON.stringify(notes)}`)
    assert(neutral.outcome === "shown", `Chromium did not show the neutral one: ${neutral.outcome}`)
    assert(neutral.data?.url === "/dashboard", `neutral url: ${JSON.stringify(neutral.data)}`)
    await push.cdp.detach()
  })

  await check("switch to English", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    await page.goto(base + "/dashboard/reports")
    await page.getByRole("link", { name: "English" }).click()
    await page.getByRole("heading", { level: 1, name: "Reports" }).waitFor()
    assert(await page.getAttribute("html", "lang") === "en", "lang=en")
    await t.shot(page, "12-reports-en")
    await page.goto(base + "/dashboard")
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor()
    assert(await page.getAttribute("html", "lang") === "en", "the choice stays")
    await t.look(page, "13-overview-en")
    await page.getByRole("link", { name: "Deutsch" }).click()
    await page.getByRole("heading", { level: 1, name: "Überblick" }).waitFor()
  })

  await check("keyboard only: skip link and visible focus", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
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

  await check("the volunteers' app: enroll by link, the cases appear, it opens offline and syncs what was written offline", async t => {
    const net = await network()
    const { caseId } = await net.assignedCase()
    const offered = await net.request()
    await net.offer(offered, [net.amira])
    const code = await net.api("POST", `/api/v1/volunteers/${net.amira}/enrollment-codes`)
    assert(code.status === 201, `code: ${JSON.stringify(code.body)}`)
    const context = await t.browser()
    const page = context.pages()[0] ?? await context.newPage()
    // What the first visit transfers, compressed, up to the case list.
    let wire = 0
    let counting = true
    const sizes = []
    page.on("requestfinished", req => {
      if (counting) sizes.push(req.sizes().then(s => s.responseBodySize + s.responseHeadersSize).catch(() => 0))
    })
    await page.goto(`${base}/app/#code=${code.body.code}`)
    const field = page.getByLabel("Anmeldecode")
    assert(await field.inputValue() === code.body.code, "the link fills in the code")
    await t.look(page, "app-enroll")
    await page.getByRole("button", { name: "Anmelden" }).click()
    await page.getByRole("heading", { level: 1, name: "Meine Fälle" }).waitFor()
    assert(!page.url().includes(code.body.code), `the code left the address: ${page.url()}`)
    await page.getByRole("link", { name: "F.K." }).waitFor()
    await until(() => page.getByText("abgeglichen", { exact: true }).isVisible(), async () => `the case is not shown as synced: ${await page.locator("main").innerText()}`)
    await t.look(page, "app-cases")
    await until(() => page.evaluate(() => !!navigator.serviceWorker.controller), () => "no service worker controls the app")
    counting = false
    for (const size of await Promise.all(sizes)) wire += size
    console.log(`     the app's first load: ${(wire / 1024).toFixed(0)} KiB on the wire (WebAssembly included)`)
    assert(wire > 0 && wire < 1_500_000, `the first load transfers ${wire} bytes`)
    await page.getByRole("link", { name: "Anfragen (1 offen)" }).click()
    await page.getByRole("button", { name: "Annehmen" }).waitFor()
    await t.look(page, "app-offers")

    await context.setOffline(true)
    await page.reload()
    await page.getByRole("button", { name: "Annehmen" }).click()
    await page.getByText("Zusage gespeichert").waitFor()
    await page.getByRole("link", { name: "Zu den Fällen" }).click()
    await page.getByRole("link", { name: "F.K." }).click()
    await page.getByRole("heading", { level: 1, name: "F.K." }).waitFor()
    const note = `Offline notiert ${Date.now()}`
    await page.getByLabel("Neue Notiz").fill(note)
    await page.getByRole("button", { name: "Notiz speichern" }).click()
    await page.getByRole("paragraph").filter({ hasText: note }).waitFor()
    await page.getByLabel("Minuten", { exact: true }).fill("120")
    await page.getByLabel("Fahrtzeit (Minuten)").fill("15")
    await page.getByRole("button", { name: "Stunden eintragen" }).click()
    await page.getByText(/120 Min\. \+ 15 Min\. Fahrt/).waitFor()
    await page.getByLabel("Neuer Termin: Beginn").fill(`${inDays(2)}T10:30`)
    await page.getByLabel("Worum es geht").fill("Anmeldung Kita")
    await page.getByRole("button", { name: "Termin speichern" }).click()
    await page.getByText(/Anmeldung Kita/).waitFor()
    await t.look(page, "app-case-offline")

    await context.setOffline(false)
    await until(async () => {
      const c = await net.api("GET", `/api/v1/cases/${caseId}`)
      const r = await net.api("GET", `/api/v1/requests/${offered}`)
      return c.status === 200 && c.body.notes.some(n => n.text === note) &&
        c.body.hours.some(h => h.minutes === 120 && h.travelMinutes === 15 && h.authorVerified) &&
        c.body.appointments.some(a => a.purpose === "Anmeldung Kita" && a.end - a.start === 3_600_000) &&
        r.body.status === "assigned" && r.body.assigned_volunteer_id === net.amira
    }, async () => `the server does not hold the offline work: ${JSON.stringify((await net.api("GET", `/api/v1/cases/${caseId}`)).body)}`,
    { timeout: 10_000 })
    const misfits = await shapeMisfits(net, caseId)
    assert(!misfits.length, `the app's writes leave protocol's schema (protocol/schema/case.json):\n${misfits.join("\n")}`)

    // A coordinator's note reaches the open app without a reload.
    await mark(page)
    const desk = `Von der Koordination ${Date.now()}`
    const added = await net.api("POST", `/api/v1/cases/${caseId}/notes`, { body: { text: desk } })
    assert(added.status === 201, `coordinator note: ${JSON.stringify(added.body)}`)
    await page.getByRole("paragraph").filter({ hasText: desk }).waitFor()
    assert(await stillMarked(page), "the app reloaded")

    // Her own availability, which the matching ranks by.
    await page.goto(`${base}/app/#availability`)
    const tuesday = page.getByRole("group", { name: "Dienstag" })
    await tuesday.getByLabel("verfügbar").check()
    await tuesday.getByLabel("von").fill("14:00")
    await tuesday.getByLabel("bis").fill("18:00")
    await page.getByRole("button", { name: "Verfügbarkeit speichern" }).click()
    await until(async () => {
      const v = await net.api("GET", `/api/v1/volunteers/${net.amira}`)
      return v.body.availability.some(x => x.weekday === 2 && x.from === "14:00" && x.to === "18:00")
    }, async () => `availability: ${JSON.stringify((await net.api("GET", `/api/v1/volunteers/${net.amira}`)).body.availability)}`)
    await t.look(page, "app-availability")

    // The week's appointments across cases: the one made offline, two days ahead.
    await page.goto(`${base}/app/#week`)
    await page.getByRole("heading", { level: 1, name: "Termine dieser Woche" }).waitFor()
    await page.getByText(/Anmeldung Kita/).waitFor()
    await t.look(page, "app-week")

    // The month's hours add up what was logged.
    await page.goto(`${base}/app/#hours`)
    await page.getByRole("heading", { level: 1, name: /Meine Stunden im/ }).waitFor()
    assert(await page.locator("#hours-total").innerText() === "2:00 h", `total: ${await page.locator("main").innerText()}`)
    assert(await page.locator("#travel-total").innerText() === "0:15 h", "travel")
    await t.look(page, "app-hours")
  })

  await check("the volunteers' app: a push shows a German notice without names that leads to the offers; a note edited in the app and on a lotse-core phone at once merges", async t => {
    const net = await network()
    const first = "Termin beim Jobcenter"
    const caseId = await net.caseWithNote(first)
    const { context, page, watched: push } = await enrolledApp(t, net, pushWitness)
    await until(() => page.evaluate(() => !!navigator.serviceWorker.controller), () => "no service worker controls the app")
    await page.getByRole("link", { name: "Dieses Gerät" }).click()
    await page.getByRole("button", { name: "Benachrichtigungen einschalten" }).click()
    // No push service in headless Chromium: the app must say so rather than spin.
    await until(async () => !/Wird eingeschaltet/.test(await page.locator("#push-status").innerText()) &&
      (await page.locator("#push-status").innerText()).length > 0, () => "the notification switch gave no answer", { timeout: 30_000 })
    await t.look(page, "app-device")

    // The push the server sends for this device: to a stand-in, since headless Chromium
    // has no push service; the subscription is registered with the app's own token.
    const standIn = await pushStandIn()
    const { token } = await page.evaluate(() => JSON.parse(localStorage.getItem("lotse.device")))
    const subscribed = await api("POST", "/api/v1/push/subscriptions", { token, body: standIn.subscription })
    assert(subscribed.status === 201 || subscribed.status === 200, `subscription: ${JSON.stringify(subscribed.body)}`)
    const requestId = await net.request()
    await net.offer(requestId, [net.amira])
    const payload = await standIn.next()
    await standIn.close()
    const pushed = JSON.parse(payload)
    assert(pushed.kind === "offer" && pushed.request_id === requestId, `payload: ${payload}`)
    assert(!/Haddad|Amira|Lindenstraße|Nordstadt|Özdemir|F\.K\.|Befund/.test(payload), `personal data in the push: ${payload}`)

    const { deliver, shown } = await push.ready("/app/")
    await deliver(payload)
    let seen = []
    const n = await until(async () => (seen = await shown()).find(x => x.tag === requestId && x.outcome !== "pending"),
      () => `no notification: ${JSON.stringify(seen)}`)
    assert(n.outcome === "shown", `Chromium did not show it: ${n.outcome}`)
    assert(n.title === "Neue Anfrage für Sie", `title: ${n.title}`)
    assert(!/Haddad|Amira|Lindenstraße|Nordstadt|F\.K\./.test(`${n.title} ${n.body}`), `personal data in the notice: ${n.body}`)
    assert(n.data?.screen === "#offers", `it leads to: ${JSON.stringify(n.data)}`)
    await push.cdp.detach()
    // Where the notice leads: the offer, to accept.
    await page.goto(`${base}/app/#offers`)
    await page.getByRole("heading", { level: 1, name: "Anfragen" }).waitFor()
    await page.getByRole("button", { name: "Annehmen" }).waitFor()

    await page.goto(`${base}/app/#case/${caseId}`)
    await page.getByText(first).first().waitFor()
    // Offline for real (a reload: an open WebSocket outlives the emulation), so that the
    // two edits are made without either knowing the other.
    await context.setOffline(true)
    await page.reload()
    await page.getByRole("heading", { level: 1, name: "F.K." }).waitFor()
    await page.getByText("Bearbeiten").click()
    await page.getByLabel("Notiz", { exact: true }).fill(`${first} – Unterlagen mitbringen`)
    await page.getByRole("button", { name: "Änderung speichern" }).click()
    await page.getByRole("paragraph").filter({ hasText: `${first} – Unterlagen mitbringen` }).waitFor()
    const noteKey = (await net.api("GET", `/api/v1/cases/${caseId}`)).body.notes.find(x => x.text === first)?.id
    assert(noteKey, "the app's edit stayed on the phone until now")
    // Meanwhile a phone on lotse-core edits the start of the same note.
    const phoneCode = await net.api("POST", `/api/v1/volunteers/${net.amira}/enrollment-codes`)
    await lotseCorePhoneEdits(phoneCode.body.code, caseId, noteKey, `Heute: ${first}`)
    const held = (await net.api("GET", `/api/v1/cases/${caseId}`)).body.notes
    assert(held.some(x => x.text === `Heute: ${first}`), `the phone's edit on the server: ${JSON.stringify(held)}`)
    await context.setOffline(false)
    const merged = `Heute: ${first} – Unterlagen mitbringen`
    await until(async () => (await net.api("GET", `/api/v1/cases/${caseId}`)).body.notes.some(x => x.text === merged),
      async () => `not merged on the server: ${JSON.stringify((await net.api("GET", `/api/v1/cases/${caseId}`)).body.notes)}`,
      { timeout: 10_000 })
    await page.getByRole("paragraph").filter({ hasText: merged }).waitFor()
    const misfits = await shapeMisfits(net, caseId)
    assert(!misfits.length, `the app's edit leaves protocol's schema:\n${misfits.join("\n")}`)
  })

  await check("the volunteers' app replays a note typed offline onto the case's new generation", async t => {
    const net = await network()
    const secret = "Vertraulich 9Q falsch eingetragen"
    const caseId = await net.caseWithNote(secret)
    const { context, page } = await enrolledApp(t, net)
    await page.getByRole("link", { name: "F.K." }).click()
    await page.getByRole("paragraph").filter({ hasText: secret }).waitFor()
    await until(() => page.getByText("abgeglichen", { exact: true }).isVisible(), () => "the case is not synced")

    // Offline for real: an open WebSocket outlives the emulation, a reload does not.
    await context.setOffline(true)
    await page.reload()
    await page.getByRole("heading", { level: 1, name: "F.K." }).waitFor()
    const offline = `Offline nach der Prüfung ${Date.now()}`
    await page.getByLabel("Neue Notiz").fill(offline)
    await page.getByRole("button", { name: "Notiz speichern" }).click()
    await page.getByRole("paragraph").filter({ hasText: offline }).waitFor()
    const before = (await net.api("GET", `/api/v1/cases/${caseId}`)).body
    assert(!before.notes.some(n => n.text === offline), "the note stayed on the phone until now")
    const noteId = before.notes.find(n => n.text === secret).id
    const erased = await net.api("POST", `/api/v1/cases/${caseId}/notes/${noteId}/erase`, { body: { reason: "mistake" } })
    assert(erased.status === 200, `erase: ${JSON.stringify(erased.body)}`)
    const successor = erased.body.documentId
    assert(successor && successor !== caseId, `a new generation: ${JSON.stringify(erased.body)}`)

    await context.setOffline(false)
    await until(async () => {
      const c = (await net.api("GET", `/api/v1/cases/${caseId}`)).body
      return c.documentId === successor && c.notes.some(n => n.text === offline) && !c.notes.some(n => n.text === secret)
    }, async () => `not on the new generation: ${JSON.stringify((await net.api("GET", `/api/v1/cases/${caseId}`)).body)} ${t.violations.join(" ")} held=${await page.evaluate(() => localStorage.getItem("lotse.held"))} url=${page.url()} net=${await page.locator("#net").innerText()} successor=${successor} case=${caseId}`, { timeout: 15_000 })
    await page.getByRole("paragraph").filter({ hasText: offline }).waitFor()
    assert(await page.getByText(secret).count() === 0, "the erased note left the app")
    assert(page.url().endsWith(`#case/${successor}`), `the page follows the case: ${page.url()}`)
  })

  await check("the volunteers' app drops withdrawn and deleted cases, and wipes itself when revoked", async t => {
    const net = await network()
    const kept = (await net.assignedCase()).caseId
    const withdrawn = (await net.assignedCase()).caseId
    const deleted = (await net.assignedCase()).caseId
    const { context, page } = await enrolledApp(t, net)
    await until(async () => (await page.getByRole("link", { name: "F.K." }).count()) === 3, async () => `three cases: ${await page.locator("main").innerText()}`)
    /** The keys of the app's automerge storage that name `id`, as JSON. */
    const stored = id => page.evaluate(id => new Promise(resolve => {
      const open = indexedDB.open("lotse")
      open.onerror = () => resolve(["cannot open"])
      open.onsuccess = () => {
        const db = open.result
        const names = [...db.objectStoreNames]
        if (!names.length) { db.close(); resolve([]); return }
        const req = db.transaction(names[0]).objectStore(names[0]).getAllKeys()
        req.onsuccess = () => { db.close(); resolve(req.result.map(k => JSON.stringify(k)).filter(k => k.includes(id))) }
      }
    }), id)
    await until(async () => (await stored(withdrawn)).length > 0 && (await stored(deleted)).length > 0, () => "the cases are in IndexedDB")

    const moved = await net.api("PUT", `/api/v1/cases/${withdrawn}/volunteers`, { body: { volunteer_ids: [net.olena] } })
    assert(moved.status === 200, `unshare: ${JSON.stringify(moved.body)}`)
    const gone = await net.api("DELETE", `/api/v1/cases/${deleted}?reason=mistake`)
    assert(gone.status === 204, `delete: ${gone.status}`)
    await page.reload()
    await until(async () => (await page.getByRole("link", { name: "F.K." }).count()) === 1, async () => `one case left: ${await page.locator("main").innerText()}`)
    await until(async () => (await stored(withdrawn)).length === 0 && (await stored(deleted)).length === 0,
      async () => `still stored: ${await stored(withdrawn)} ${await stored(deleted)}`)
    assert((await stored(kept)).length > 0, "the kept case stays")

    const devices = await net.api("GET", `/api/v1/volunteers/${net.amira}/devices`)
    const browserDevice = devices.body.find(d => d.name === "Browser")
    assert(browserDevice, `the app's device: ${JSON.stringify(devices.body)}`)
    const revoked = await net.api("POST", `/api/v1/devices/${browserDevice.id}/revoke`)
    assert(revoked.status === 200 || revoked.status === 204, `revoke: ${revoked.status}`)
    await page.reload()
    await page.getByRole("heading", { level: 1, name: "Abgemeldet" }).waitFor()
    await t.look(page, "app-revoked")
    const left = await page.evaluate(async () => ({
      databases: (await indexedDB.databases()).map(d => d.name),
      caches: await caches.keys(),
      token: localStorage.getItem("lotse.device"),
    }))
    assert(!left.databases.includes("lotse") && !left.caches.length && !left.token, `left behind: ${JSON.stringify(left)}`)
  })

  await check("the volunteers' app wipes itself when its lease ran out without contact", async t => {
    const net = await network()
    await net.assignedCase()
    const { context, page } = await enrolledApp(t, net)
    await page.getByRole("link", { name: "F.K." }).waitFor()
    const contact = await until(() => page.evaluate(() => JSON.parse(localStorage.getItem("lotse.contact"))), () => "no contact recorded")
    assert(contact.lease_ms > 0, `a lease: ${JSON.stringify(contact)}`)
    // The phone has been in a drawer for longer than the lease, without a network.
    await page.evaluate(lease => localStorage.setItem("lotse.contact", JSON.stringify({ at: Date.now() - lease - 60_000, lease_ms: lease })), contact.lease_ms)
    await context.setOffline(true)
    await page.reload()
    await page.getByRole("heading", { level: 1, name: "Abgemeldet" }).waitFor()
    await page.getByText("zu lange keine Verbindung").waitFor()
    const left = await page.evaluate(async () => ({
      databases: (await indexedDB.databases()).map(d => d.name),
      token: localStorage.getItem("lotse.device"),
    }))
    assert(!left.databases.includes("lotse") && !left.token, `left behind: ${JSON.stringify(left)}`)
  })

  await check("the volunteers' app writes nothing while a newer server waits for a newer app", async t => {
    const net = await network()
    await net.assignedCase()
    const { context, page } = await enrolledApp(t, net)
    await page.getByRole("link", { name: "F.K." }).click()
    assert(await page.getByLabel("Neue Notiz").isEnabled(), "writable before")
    // A server one schema version ahead (this one cannot be): its answer, changed so.
    await page.route("**/api/v1/device/documents", async route => {
      const response = await route.fetch()
      await route.fulfill({ response, json: { ...(await response.json()), schema_version: 2 } })
    })
    await page.reload()
    await page.locator("#update").waitFor()
    assert(await page.getByLabel("Neue Notiz").isDisabled(), "no writing until the new app is there")
    assert(await page.getByRole("button", { name: "Stunden eintragen" }).isDisabled(), "no hours either")
    await t.look(page, "app-outdated")
  })

  await check("a coordinator starts a Patenschaft with two volunteers", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    await page.goto(base + "/dashboard/cases")
    await page.getByRole("link", { name: "Neuer Fall" }).click()
    await page.getByRole("heading", { level: 1, name: "Neuer Fall" }).waitFor()
    await t.look(page, "case-new")
    await page.getByLabel("Kürzel der Person").fill("P.A.")
    await page.getByLabel("Art").selectOption("patenschaft")
    await page.getByLabel("Thema").selectOption("bildung")
    await page.getByRole("checkbox", { name: "Arabisch" }).check()
    await page.getByRole("checkbox", { name: "Amira Haddad" }).check()
    await page.getByRole("checkbox", { name: "Olena Kovalenko" }).check()
    await page.getByRole("button", { name: "Fall anlegen" }).click()
    await page.getByRole("heading", { level: 1, name: "P.A." }).waitFor()
    assert(await page.locator("#case-kind").innerText() === "Patenschaft", "the kind shows")
    await t.look(page, "case-patenschaft")
    const id = new URL(page.url()).pathname.split("/").pop()
    const c = await net.api("GET", `/api/v1/cases/${id}`)
    assert(c.status === 200 && c.body.kind === "patenschaft" && c.body.topic === "bildung", `the API: ${JSON.stringify(c.body)}`)
  })

  await check("log out everywhere", async t => {
    const net = await network()
    const page = await t.loggedIn(net)
    assert((await net.api("GET", "/api/v1/me")).status === 200, "the API session works before")
    await page.getByRole("button", { name: "Überall abmelden" }).click()
    await page.waitForURL(base + "/dashboard/login")
    const me = await net.api("GET", "/api/v1/me")
    assert(me.status === 401, "the API session ended too")
    await page.goto(base + "/dashboard")
    assert(new URL(page.url()).pathname === "/dashboard/login", `the browser is logged out: ${page.url()}`)
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
  await stopServer()
  fs.rmSync(work, { recursive: true, force: true })
}
const passed = results.filter(r => r.ok).length
const failed = results.length - passed
console.log(`axe-core ran on ${axePages} pages; findings below serious: ${[...axeMinor].join(", ") || "none"}`)
console.log(`screenshots in ${ARTIFACTS}`)
if (!results.length) console.log("no check ran (ONLY matched none)")
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed || crashed || !results.length ? 1 : 0)
