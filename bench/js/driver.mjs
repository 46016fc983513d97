#!/usr/bin/env node
// The JavaScript side of lotse-bench: a stock automerge-repo 2.x client whose WebSocket
// traffic is counted (frames and CBOR payload bytes, both ways).
//
//   node driver.mjs seed      <ws-url> <docs-dir> <store-dir> <ids-file>
//       imports every <docs-dir>/*.am (automerge binaries) into a repo with file storage,
//       connected, 500 at a time; each window is done when the server announced our
//       heads for each of its documents.
//   node driver.mjs reconnect <ws-url> <store-dir> <ids-file> [<edits-dir>]
//       restarts that client: loads every document from its storage (no network yet),
//       applies <edits-dir>/<id>.chg (automerge changes) as offline edits, then connects;
//       done when the server's sync messages include our heads for every document.
//   node driver.mjs fetch     <ws-url> <ids-file>
//       a fresh in-memory client finds every document; done when all are ready.
//
// One JSON line on stdout: {status, ms, frames_sent, frames_received, bytes_sent,
// bytes_received, round_trips, confirmed, docs}. Deadline: BENCH_TIMEOUT_MS (120000).

import fs from "node:fs"
import path from "node:path"
import { Repo, cbor } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import * as A from "@automerge/automerge"

const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 120000)
const QUIET_MS = 300
console.log = (...args) => console.error(...args)
function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code))
}
process.on("uncaughtException", e => finish({ status: "error", reason: String(e?.stack ?? e) }, 1))
process.on("unhandledRejection", e => finish({ status: "error", reason: String(e?.stack ?? e) }, 1))
// The traffic counter of the running command, so a timeout can say how far it got.
let current = null
setTimeout(() => {
  const c = current
  const progress = c
    ? `; ${c.confirmed.size} of ${c.targets.size} documents confirmed, ${c.framesSent} frames sent, ` +
      `${c.framesReceived} received, last frame ${Math.round(now() - c.lastFrame)} ms ago`
    : ""
  finish({ status: "error", reason: `timed out after ${TIMEOUT_MS} ms${progress}` }, 1)
}, TIMEOUT_MS).unref()
const sleep = ms => new Promise(r => setTimeout(r, ms))
const now = () => performance.now()

/** Counts traffic and tracks, per document, the heads the server announced and how
 *  many client flights it took (a flight = client messages sent after a server message). */
function counted(url, targets) {
  const adapter = new WebSocketClientAdapter(url)
  const c = { adapter, framesSent: 0, framesReceived: 0, bytesSent: 0, bytesReceived: 0,
    lastFrame: now(), perDoc: new Map(), confirmed: new Set(), allConfirmedAt: null, targets,
    announced: new Map() }
  current = c
  const docState = id => {
    let s = c.perDoc.get(id)
    if (!s) { s = { last: null, phases: 0, phasesAtConfirm: 0 }; c.perDoc.set(id, s) }
    return s
  }
  const send = adapter.send.bind(adapter)
  adapter.send = message => {
    c.framesSent++
    c.bytesSent += cbor.encode(message).byteLength
    c.lastFrame = now()
    if (message.documentId) {
      const s = docState(message.documentId)
      if (s.last !== "c") { s.phases++; s.last = "c" }
    }
    send(message)
  }
  const receive = adapter.receiveMessage.bind(adapter)
  adapter.receiveMessage = bytes => {
    c.framesReceived++
    c.bytesReceived += bytes.byteLength
    c.lastFrame = now()
    try {
      const m = cbor.decode(new Uint8Array(bytes))
      if (m.documentId) {
        const s = docState(m.documentId)
        s.last = "s"
        const want = c.targets.get(m.documentId)
        if (m.type === "sync") c.announced.set(m.documentId, A.decodeSyncMessage(m.data).heads)
        if (m.type === "sync" && want && !c.confirmed.has(m.documentId)) {
          const heads = c.announced.get(m.documentId)
          if (want.every(h => heads.includes(h))) {
            c.confirmed.add(m.documentId)
            s.phasesAtConfirm = s.phases
            if (c.confirmed.size === c.targets.size) c.allConfirmedAt = now()
          }
        }
      }
    } catch {}
    receive(bytes)
  }
  return c
}

async function waitDone(c, started) {
  while (c.allConfirmedAt === null || now() - c.lastFrame < QUIET_MS) {
    if (c.allConfirmedAt === null && c.targets.size === 0) c.allConfirmedAt = now()
    await sleep(20)
  }
  let rt = 0
  for (const id of c.targets.keys()) rt = Math.max(rt, c.perDoc.get(id)?.phasesAtConfirm ?? 0)
  return {
    status: "ok", ms: c.allConfirmedAt - started,
    frames_sent: c.framesSent, frames_received: c.framesReceived,
    bytes_sent: c.bytesSent, bytes_received: c.bytesReceived,
    // +1: join/peer comes first, the adapter sends nothing else before the answer.
    round_trips: rt + 1, confirmed: c.confirmed.size, docs: c.targets.size,
  }
}

const FETCH_WINDOW = 500
const SEED_WINDOW = 500

async function main() {
  const [cmd, url, ...args] = process.argv.slice(2)
  if (cmd === "seed") {
    const [docsDir, storeDir, idsFile] = args
    // Connected first, then the documents in windows of SEED_WINDOW, each window
    // confirmed by the server before the next: handed all 5,000 at once, the stock server
    // on two cores let some documents run into its own 60 s timeout, stopped syncing
    // them, and once died of that timeout's unhandled rejection (BENCHMARKS.md). Seeding
    // is setup, not a measurement, so it is paced.
    const targets = new Map()
    const c = counted(url, targets)
    const repo = new Repo({ storage: new NodeFSStorageAdapter(storeDir), network: [c.adapter] })
    const started = now()
    const ids = {}
    const files = fs.readdirSync(docsDir).filter(f => f.endsWith(".am")).sort()
    for (let i = 0; i < files.length; i += SEED_WINDOW) {
      for (const f of files.slice(i, i + SEED_WINDOW)) {
        const handle = repo.import(new Uint8Array(fs.readFileSync(path.join(docsDir, f))))
        await handle.whenReady()
        targets.set(handle.documentId, A.getHeads(handle.doc()))
        ids[f.slice(0, -3)] = handle.documentId
      }
      // A document whose answer came before its target was known is confirmed here.
      const held = (id, want) => want.every(h => (c.announced.get(id) ?? []).includes(h))
      while (c.confirmed.size < targets.size) {
        for (const [id, want] of targets) if (!c.confirmed.has(id) && held(id, want)) c.confirmed.add(id)
        if (c.confirmed.size < targets.size) await sleep(20)
      }
    }
    const ms = now() - started
    await repo.flush()
    fs.writeFileSync(idsFile, JSON.stringify(ids))
    await repo.shutdown()
    return { status: "ok", ms, frames_sent: c.framesSent, frames_received: c.framesReceived,
      bytes_sent: c.bytesSent, bytes_received: c.bytesReceived, round_trips: 0,
      confirmed: c.confirmed.size, docs: targets.size }
  }
  if (cmd === "reconnect") {
    const [storeDir, idsFile, editsDir] = args
    const ids = JSON.parse(fs.readFileSync(idsFile, "utf8"))
    const repo = new Repo({ storage: new NodeFSStorageAdapter(storeDir), network: [] })
    const handles = await Promise.all(Object.values(ids).map(id => repo.find(id)))
    const targets = new Map()
    for (const h of handles) {
      const chg = editsDir && Object.entries(ids).find(([, v]) => v === h.documentId)?.[0]
      const file = chg && path.join(editsDir, `${chg}.chg`)
      if (file && fs.existsSync(file)) {
        const bytes = new Uint8Array(fs.readFileSync(file))
        h.update(d => A.applyChanges(d, [bytes])[0])
      }
      targets.set(h.documentId, A.getHeads(h.doc()))
    }
    await repo.flush()
    const c = counted(url, targets)
    const started = now()
    repo.networkSubsystem.addNetworkAdapter(c.adapter)
    const r = await waitDone(c, started)
    await repo.flush()
    await repo.shutdown()
    return r
  }
  if (cmd === "fetch") {
    const [idsFile] = args
    const ids = Object.values(JSON.parse(fs.readFileSync(idsFile, "utf8")))
    const c = counted(url, new Map())
    const repo = new Repo({ network: [c.adapter] })
    const started = now()
    // At most FETCH_WINDOW finds in flight (a sliding window): a stock DocHandle gives up
    // on a document after 60 s, and one burst of 5,000 finds takes about that long.
    let next = 0
    const fetchOne = async () => {
      while (next < ids.length) await repo.find(ids[next++])
    }
    await Promise.all(Array.from({ length: Math.min(FETCH_WINDOW, ids.length) }, fetchOne))
    const ms = now() - started
    const r = { status: "ok", ms, frames_sent: c.framesSent, frames_received: c.framesReceived,
      bytes_sent: c.bytesSent, bytes_received: c.bytesReceived, round_trips: 0, confirmed: ids.length, docs: ids.length }
    await repo.shutdown().catch(() => {})
    return r
  }
  throw new Error(`unknown command ${cmd}`)
}
main().then(r => finish(r, 0), e => finish({ status: "error", reason: String(e?.stack ?? e) }, 1))
