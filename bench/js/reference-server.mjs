#!/usr/bin/env node
// The stock automerge-repo 2.x sync server (NodeWSServerAdapter + nodefs storage), the
// reference lotse-bench compares our server against: tests/interop/reference-server.mjs,
// run with this folder's packages (pinned to the same versions).
//
//   node reference-server.mjs <port> <storage-dir>     prints "listening <port>"

import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { serveReference } from "../../tests/interop/reference-server.mjs"

const [port, storageDir] = process.argv.slice(2)
serveReference(
  { WebSocketServer, Repo, NodeWSServerAdapter, NodeFSStorageAdapter },
  port,
  storageDir,
)
