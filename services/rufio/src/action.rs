//! One bmc.tinkerbell.org `Action` against a BMC: the step a Task performs, and the power
//! state a Task then waits for (upstream verifies `on` and `off`/`soft` every 3 s; other
//! actions are not verified).

use tinkerbell_core::model::bmc::Action;

use crate::{Bmc, BmcError, BootDevice, PowerAction, PowerState};

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// The power state was read (`powerAction: status`).
    PowerState(PowerState),
    /// The request was accepted; the Task should wait until the BMC reports this state.
    AwaitPower(PowerState),
    /// The request was accepted; nothing to verify.
    Done,
}

/// Which action an `Action` holds, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `powerAction: status`.
    PowerStatus,
    /// Any other `powerAction`.
    Power(PowerAction),
    /// `bootDevice` or the deprecated `oneTimeBootDeviceAction` (first device, never
    /// persistent).
    BootDevice {
        /// Device.
        device: BootDevice,
        /// Persist for every boot.
        persistent: bool,
        /// EFI boot.
        efi: bool,
    },
    /// `virtualMediaAction`: insert `url` (eject when empty) as `kind`.
    VirtualMedia {
        /// Image URL; empty ejects.
        url: String,
        /// Media kind, e.g. `CD`.
        kind: String,
    },
}

impl Step {
    /// Read the one action an `Action` holds. Secure Boot actions are not implemented.
    pub fn from_action(a: &Action) -> Result<Step, BmcError> {
        let bad = |m: String| Err(BmcError::Config(m));
        let mut steps = Vec::new();
        if let Some(p) = &a.power_action {
            steps.push(match p.as_str() {
                "status" => Step::PowerStatus,
                s => match PowerAction::parse(s) {
                    Some(pa) => Step::Power(pa),
                    None => return bad(format!("unknown powerAction {s:?}")),
                },
            });
        }
        if let Some(b) = &a.boot_device {
            let d = b.device.clone().unwrap_or_default();
            let device = BootDevice::parse(&d)
                .ok_or_else(|| BmcError::Config(format!("unknown boot device {d:?}")))?;
            steps.push(Step::BootDevice {
                device,
                persistent: b.persistent.unwrap_or(false),
                efi: b.efi_boot.unwrap_or(false),
            });
        }
        if let Some(o) = &a.one_time_boot_device_action {
            let d = o
                .devices
                .as_ref()
                .and_then(|d| d.first())
                .cloned()
                .unwrap_or_default();
            let device = BootDevice::parse(&d)
                .ok_or_else(|| BmcError::Config(format!("unknown boot device {d:?}")))?;
            steps.push(Step::BootDevice {
                device,
                persistent: false,
                efi: o.efi_boot.unwrap_or(false),
            });
        }
        if let Some(v) = &a.virtual_media_action {
            steps.push(Step::VirtualMedia {
                url: v.media_url.clone().unwrap_or_default(),
                kind: v.kind.clone().unwrap_or_else(|| "CD".into()),
            });
        }
        let secure_boot = a.secure_boot.is_some()
            || a.secure_boot_reset_keys.is_some()
            || a.secure_boot_database_reset_keys.is_some()
            || a.secure_boot_certificate_import.is_some();
        match (steps.len(), secure_boot) {
            (0, true) => Err(BmcError::Unsupported {
                host: String::new(),
                detail: "Secure Boot actions are not implemented".into(),
            }),
            (1, false) => Ok(steps.remove(0)),
            (0, false) => bad("the action is empty".into()),
            _ => bad("an action must hold exactly one operation".into()),
        }
    }
}

/// Run one step against a BMC.
pub async fn run(bmc: &dyn Bmc, step: &Step) -> Result<ActionOutcome, BmcError> {
    match step {
        Step::PowerStatus => Ok(ActionOutcome::PowerState(bmc.power_state().await?)),
        Step::Power(a) => {
            bmc.power(*a).await?;
            Ok(match a {
                PowerAction::On => ActionOutcome::AwaitPower(PowerState::On),
                PowerAction::Off | PowerAction::Soft => ActionOutcome::AwaitPower(PowerState::Off),
                PowerAction::Cycle | PowerAction::Reset => ActionOutcome::Done,
            })
        }
        Step::BootDevice {
            device,
            persistent,
            efi,
        } => {
            bmc.boot_device(*device, *persistent, *efi).await?;
            Ok(ActionOutcome::Done)
        }
        Step::VirtualMedia { url, kind } => {
            bmc.virtual_media(url, kind).await?;
            Ok(ActionOutcome::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(v: serde_json::Value) -> Action {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn steps_from_actions() {
        let table = [
            (
                serde_json::json!({"powerAction": "on"}),
                Step::Power(PowerAction::On),
            ),
            (
                serde_json::json!({"powerAction": "status"}),
                Step::PowerStatus,
            ),
            (
                serde_json::json!({"bootDevice": {"device": "pxe", "persistent": true, "efiBoot": true}}),
                Step::BootDevice {
                    device: BootDevice::Pxe,
                    persistent: true,
                    efi: true,
                },
            ),
            (
                serde_json::json!({"oneTimeBootDeviceAction": {"device": ["disk", "pxe"], "efiBoot": true}}),
                Step::BootDevice {
                    device: BootDevice::Disk,
                    persistent: false,
                    efi: true,
                },
            ),
            (
                serde_json::json!({"virtualMediaAction": {"mediaURL": "http://x/a.iso", "kind": "CD"}}),
                Step::VirtualMedia {
                    url: "http://x/a.iso".into(),
                    kind: "CD".into(),
                },
            ),
        ];
        for (a, want) in table {
            assert_eq!(Step::from_action(&action(a.clone())).unwrap(), want, "{a}");
        }
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"powerAction": "explode"}),
            serde_json::json!({"bootDevice": {"device": "floppy"}}),
            serde_json::json!({"powerAction": "on", "bootDevice": {"device": "pxe"}}),
        ] {
            assert_eq!(
                Step::from_action(&action(bad.clone())).unwrap_err().kind(),
                crate::ErrorKind::Config,
                "{bad}"
            );
        }
        let e = Step::from_action(&action(serde_json::json!({"secureBoot": {"enable": true}})))
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
    }
}
