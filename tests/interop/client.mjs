#!/usr/bin/env node
// A stock automerge-repo 2.x client, driven from the Rust interop test.
//
//   node client.mjs create <ws-url> <json>              -> {"status":"ok","documentId":"…","heads":[…]}
//   node client.mjs read   <ws-url> <documentId>        -> {"status":"ok","doc":{…}} | {"status":"unavailable"}
//   node client.mjs change <ws-url> <documentId> <json> -> {"status":"ok","heads":[…]}
//   node client.mjs hold   <ws-url> <documentId> <dir> <json>
//       -> {"status":"ok","toldUnavailable":…,"heads":[…]}
//       Fetches the document, keeps only its bytes, writes <dir>/held, and once <dir>/go
//       exists comes back
//       with them on a new connection, changes the document offline-style and lets the repo
//       sync it: a phone that held the document for months. toldUnavailable: the server
//       answered doc-unavailable (within 5 s of the change).
//   node client.mjs race   <ws-url-a> <ws-url-b> <n>  -> {"status":"ok","waitedMs":…} | {"status":"unavailable"}
//       Client A creates n documents; client B asks for the last one at once, before the
//       server can have it, and waits (one find, no retry) until it arrives. toldUnavailable:
//       the server first answered doc-unavailable.
//
// <ws-url> is e.g. ws://127.0.0.1:PORT/sync?token=XYZ; heads are hex change hashes.
// Exactly one JSON line goes to stdout; failures print {"status":"error","reason":…}
// and exit 1. Everything else (library logs, INTEROP_TRACE=1 frame trace) goes to stderr.
// The whole command has one deadline: INTEROP_TIMEOUT_MS, default 15000.

import { Repo, cbor, isValidDocumentId } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import * as A from "@automerge/automerge"

const TIMEOUT_MS = Number(process.env.INTEROP_TIMEOUT_MS ?? 15000)
const TRACE = process.env.INTEROP_TRACE === "1"
const started = Date.now()
const deadline = started + TIMEOUT_MS

// Keep stdout for our single result line: the library logs with console.log.
console.log = (...args) => console.error(...args)

function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code))
}

function fail(reason) {
  finish({ status: "error", reason: String(reason?.message ?? reason) }, 1)
}

// The ws adapter rethrows connection errors other than ECONNREFUSED (e.g. an HTTP 401
// on upgrade) from an event handler; report them instead of dying with a stack trace.
process.on("uncaughtException", fail)
process.on("unhandledRejection", fail)
// Backstop only: each wait below has its own message at the same deadline.
setTimeout(() => fail(`timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS + 500).unref()

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function describe(message) {
  const { type, senderId, targetId, documentId, data, ...rest } = message
  const out = { type, senderId, targetId }
  if (documentId !== undefined) out.documentId = documentId
  if (data !== undefined) out.dataBytes = data.byteLength
  for (const [k, v] of Object.entries(rest)) out[k] = v
  return JSON.stringify(out)
}

/** A Repo with one WebSocket connection, memory only. Resolves once the server's
 *  `peer` answer arrived, so a later "unavailable" really comes from the server. */
async function connect(url) {
  const adapter = new WebSocketClientAdapter(url)
  const session = { adapter, unavailable: new Set(), errors: [] }

  // Observe frames in both directions without changing them.
  const receive = adapter.receiveMessage.bind(adapter)
  adapter.receiveMessage = bytes => {
    try {
      const message = cbor.decode(new Uint8Array(bytes))
      if (TRACE) console.error(`+${Date.now() - started}ms <- ${describe(message)}`)
      if (message.type === "doc-unavailable") session.unavailable.add(message.documentId)
      if (message.type === "error") session.errors.push(message.message)
    } catch (e) {
      if (TRACE) console.error(`<- undecodable frame (${bytes.byteLength} bytes): ${e}`)
    }
    receive(bytes)
  }
  const send = adapter.send.bind(adapter)
  adapter.send = message => {
    if (TRACE) console.error(`+${Date.now() - started}ms -> ${describe(message)}`)
    send(message)
  }

  const peered = new Promise(resolve => adapter.on("peer-candidate", resolve))
  session.repo = new Repo({ network: [adapter] })
  await withDeadline(peered, "server did not answer join with peer")
  return session
}

async function close(session) {
  await session.repo.shutdown()
}

function withDeadline(promise, what) {
  const left = deadline - Date.now()
  return Promise.race([
    promise,
    sleep(Math.max(left, 0)).then(() => { throw new Error(`${what} within ${TIMEOUT_MS} ms`) }),
  ])
}

/** find() through a session; returns the handle, or "unavailable" if the server said so. */
async function find(session, documentId) {
  try {
    return await session.repo.find(documentId, { signal: AbortSignal.timeout(Math.max(deadline - Date.now(), 1)) })
  } catch (e) {
    if (/unavailable/.test(e?.message ?? "")) {
      if (session.unavailable.has(documentId)) return "unavailable"
      const why = session.errors.length ? `server error: ${session.errors.join("; ")}` : "connection to server lost"
      throw new Error(`document unavailable without doc-unavailable from server (${why})`)
    }
    if (e?.name === "AbortError" || e?.name === "TimeoutError") throw new Error(`find timed out after ${TIMEOUT_MS} ms`)
    throw e
  }
}

/** Polls with fresh connections until the server hands out a copy that contains `heads`. */
async function waitUntilServerHas(url, documentId, heads) {
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const session = await connect(url)
    try {
      const handle = await find(session, documentId)
      if (handle !== "unavailable" && A.hasHeads(handle.doc(), heads)) return
    } finally {
      await close(session)
    }
    if (Date.now() + delay > deadline) throw new Error(`server did not store heads ${heads} within ${TIMEOUT_MS} ms`)
    await sleep(delay)
  }
}

function checkId(documentId) {
  if (!isValidDocumentId(documentId)) throw new Error(`invalid document id ${documentId}`)
  return documentId
}

function parseObject(text) {
  const value = JSON.parse(text)
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error("expected a JSON object")
  }
  return value
}

async function main() {
  const [command, url, ...args] = process.argv.slice(2)
  if (!url) throw new Error("usage: node client.mjs create|read|change <ws-url> [args]")

  if (command === "create") {
    const content = parseObject(args[0] ?? "{}")
    const session = await connect(url)
    const handle = session.repo.create(content)
    const heads = A.getHeads(handle.doc())
    // Keep this connection open while we check from a second one: it is the one
    // that pushes the document to the server.
    await waitUntilServerHas(url, handle.documentId, heads)
    await close(session)
    return { status: "ok", documentId: handle.documentId, heads }
  }

  if (command === "read") {
    const documentId = checkId(args[0])
    const session = await connect(url)
    const handle = await find(session, documentId)
    const result = handle === "unavailable" ? { status: "unavailable" } : { status: "ok", doc: handle.doc() }
    await close(session)
    return result
  }

  if (command === "change") {
    const documentId = checkId(args[0])
    const changes = parseObject(args[1])
    const session = await connect(url)
    const handle = await find(session, documentId)
    if (handle === "unavailable") throw new Error(`document ${documentId} is unavailable`)
    handle.change(doc => Object.assign(doc, changes))
    const heads = A.getHeads(handle.doc())
    await waitUntilServerHas(url, documentId, heads)
    await close(session)
    return { status: "ok", heads }
  }

  if (command === "hold") {
    const [idText, dir, json] = args
    const documentId = checkId(idText)
    const changes = parseObject(json ?? "{}")
    const first = await connect(url)
    const handle = await find(first, documentId)
    if (handle === "unavailable") throw new Error(`document ${documentId} is unavailable`)
    const bytes = A.save(handle.doc())
    await close(first)
    const { existsSync, writeFileSync } = await import("node:fs")
    writeFileSync(`${dir}/held`, "held")
    while (!existsSync(`${dir}/go`)) {
      if (Date.now() > deadline) throw new Error(`${dir}/go never appeared`)
      await sleep(20)
    }
    const back = await connect(url)
    const held = back.repo.import(bytes, { docId: documentId })
    held.change(doc => Object.assign(doc, changes))
    const heads = A.getHeads(held.doc())
    const told = Date.now() + 5000
    while (!back.unavailable.has(documentId) && Date.now() < Math.min(told, deadline)) await sleep(20)
    const result = { status: "ok", toldUnavailable: back.unavailable.has(documentId), heads }
    await close(back)
    return result
  }

  if (command === "race") {
    const [urlB, countText] = args
    const count = Number(countText ?? "1")
    if (!urlB || !Number.isInteger(count) || count < 1) throw new Error("usage: race <ws-url-a> <ws-url-b> <n>")
    const a = await connect(url)
    const b = await connect(urlB)
    const handles = []
    for (let i = 0; i < count; i++) handles.push(a.repo.create({ type: "note", n: i, text: `Notiz ${i}` }))
    const last = handles[handles.length - 1]
    const heads = A.getHeads(last.doc())
    const asked = Date.now()
    // An app that waits for a document it was told of: the handle may be unavailable at
    // first (the server has nothing yet) and becomes ready when the document arrives.
    const handle = await withDeadline(
      b.repo.find(last.documentId, { allowableStates: ["ready", "unavailable"] }),
      "find did not return a handle")
    await withDeadline(handle.whenReady(), "the document never reached the second client")
    while (!A.hasHeads(handle.doc(), heads)) {
      if (Date.now() > deadline) throw new Error("B never got the whole document")
      await sleep(20)
    }
    const result = { status: "ok", waitedMs: Date.now() - asked, toldUnavailable: b.unavailable.has(last.documentId), doc: handle.doc() }
    await close(b)
    await close(a)
    return result
  }

  throw new Error(`unknown command ${command}`)
}

main().then(result => finish(result, 0), fail)
