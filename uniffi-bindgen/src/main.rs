//! `uniffi-bindgen generate --library target/debug/liblotse_core.so --language kotlin ...`:
//! uniffi's own command line, built from the workspace's pinned uniffi version so that the
//! generated bindings always match the scaffolding compiled into lotse-core.

fn main() {
    uniffi::uniffi_bindgen_main()
}
