//! What the controller tests share.

/// Template `one-step`: one image2disk action with `timeout` seconds, on worker `device_1`.
pub fn one_step(timeout: u32) -> String {
    format!(
        r#"
version: "0.1"
name: one-step
global_timeout: 600
tasks:
  - name: install
    worker: "{{{{ .device_1 }}}}"
    actions:
      - name: image
        image: quay.io/tinkerbell/actions/image2disk:latest
        timeout: {timeout}
"#
    )
}
