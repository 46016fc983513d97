#!/usr/bin/env node
// The stock automerge-repo 2.x sync server (NodeWSServerAdapter + nodefs storage), the
// reference lotse-bench compares our server against. Same setup as
// tests/interop/reference-server.mjs.
//
//   node reference-server.mjs <port> <storage-dir>     prints "listening <port>"

import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const [port, storageDir] = process.argv.slice(2)
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(port) })
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(storageDir),
  peerId: "reference-server",
  sharePolicy: async () => false,
})
wss.on("listening", () => console.log(`listening ${wss.address().port}`))
wss.on("error", err => {
  console.error(`reference server: ${err.message}`)
  process.exit(1)
})
async function stop() {
  wss.close()
  const ready = Object.values(repo.handles).filter(handle => handle.isReady())
  await repo.flush(ready.map(handle => handle.documentId))
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
