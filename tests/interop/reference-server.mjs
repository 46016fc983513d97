#!/usr/bin/env node
// The stock automerge-repo sync server, set up like the official one (no announcing,
// file storage), used to check client.mjs and to compare our Rust server against.
//
//   node reference-server.mjs <port> <storage-dir>
//
// Binds 127.0.0.1 only, on any path (the token query parameter is ignored), prints
// "listening <port>" once it accepts connections (port 0 picks a free one and prints
// it), and flushes storage and exits 0 on SIGTERM or SIGINT.
//
// lotse-bench runs the same server (bench/js/reference-server.mjs calls `serveReference`)
// with the packages of its own folder: a module resolves packages from where it lies, so
// the packages are passed in rather than imported here.

import { pathToFileURL } from "node:url"

export function serveReference(
  { WebSocketServer, Repo, NodeWSServerAdapter, NodeFSStorageAdapter },
  port,
  storageDir,
) {
  if (port === undefined || !storageDir) {
    console.error("usage: node reference-server.mjs <port> <storage-dir>")
    process.exit(2)
  }

  const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(port) })
  const repo = new Repo({
    network: [new NodeWSServerAdapter(wss)],
    storage: new NodeFSStorageAdapter(storageDir),
    peerId: "reference-server",
    // Answer requests for documents, never push documents a peer did not ask for.
    sharePolicy: async () => false,
  })

  wss.on("listening", () => console.log(`listening ${wss.address().port}`))
  wss.on("error", err => {
    console.error(`reference server: ${err.message}`)
    process.exit(1)
  })

  async function stop() {
    wss.close()
    // repo.shutdown() would flush every handle, and throws on handles of documents that
    // were asked for but never found; flush only the documents we actually have.
    const ready = Object.values(repo.handles).filter(handle => handle.isReady())
    await repo.flush(ready.map(handle => handle.documentId))
    process.exit(0)
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [port, storageDir] = process.argv.slice(2)
  serveReference(
    {
      ...(await import("ws")),
      ...(await import("@automerge/automerge-repo")),
      ...(await import("@automerge/automerge-repo-network-websocket")),
      ...(await import("@automerge/automerge-repo-storage-nodefs")),
    },
    port,
    storageDir,
  )
}
