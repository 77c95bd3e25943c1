//! `bmc.tinkerbell.org/v1alpha1` Machine, Job and Task: out-of-band management through a
//! machine's BMC (Rufio).
//!
//! * [`Machine`]: how to reach a BMC, and the observed power state.
//! * [`Job`]: a list of BMC actions to run in order against a Machine.
//! * [`Task`]: one action of a Job, with the Machine's connection copied in.
//!
//! Mirrors upstream `api/v1alpha1/bmc/{machine,job,task,action,provider_opts}.go`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Known values of `Machine.status.powerState`.
pub mod power_state {
    /// Powered on.
    pub const ON: &str = "on";
    /// Powered off.
    pub const OFF: &str = "off";
    /// Unknown.
    pub const UNKNOWN: &str = "unknown";
    /// Every known value.
    pub const ALL: &[&str] = &[ON, OFF, UNKNOWN];
}

/// Known values of an action's `powerAction`.
pub mod power_action {
    /// Power on.
    pub const ON: &str = "on";
    /// Hard power off.
    pub const HARD_OFF: &str = "off";
    /// Soft (graceful) power off.
    pub const SOFT_OFF: &str = "soft";
    /// Power cycle.
    pub const CYCLE: &str = "cycle";
    /// Reset.
    pub const RESET: &str = "reset";
    /// Read the power state.
    pub const STATUS: &str = "status";
    /// Every known value.
    pub const ALL: &[&str] = &[ON, HARD_OFF, SOFT_OFF, STATUS, CYCLE, RESET];
}

/// Known boot devices (`bootDevice.device`, `oneTimeBootDeviceAction.device[]`).
pub mod boot_device {
    /// Network boot.
    pub const PXE: &str = "pxe";
    /// Local disk.
    pub const DISK: &str = "disk";
    /// BIOS / firmware setup.
    pub const BIOS: &str = "bios";
    /// CD-ROM (including virtual media).
    pub const CDROM: &str = "cdrom";
    /// Safe mode.
    pub const SAFE: &str = "safe";
    /// Every known value.
    pub const ALL: &[&str] = &[PXE, DISK, BIOS, CDROM, SAFE];
}

/// Known values of `virtualMediaAction.kind`.
pub mod virtual_media_kind {
    /// Virtual CD-ROM.
    pub const CD: &str = "CD";
    /// Every known value.
    pub const ALL: &[&str] = &[CD];
}

/// Known values of the Secure Boot key reset actions' `resetType`.
pub mod secure_boot_reset_type {
    /// Reset all keys to their defaults.
    pub const RESET_ALL_KEYS_TO_DEFAULT: &str = "ResetAllKeysToDefault";
    /// Delete all keys.
    pub const DELETE_ALL_KEYS: &str = "DeleteAllKeys";
    /// Delete the platform key (whole-subsystem reset only).
    pub const DELETE_PK: &str = "DeletePK";
    /// Every known value.
    pub const ALL: &[&str] = &[RESET_ALL_KEYS_TO_DEFAULT, DELETE_ALL_KEYS, DELETE_PK];
}

/// Known bmclib provider names for `providerOptions.preferredOrder` (case insensitive).
pub mod provider_name {
    /// ipmitool.
    pub const IPMITOOL: &str = "ipmitool";
    /// ASRock Rack.
    pub const ASROCKRACK: &str = "asrockrack";
    /// Redfish (gofish).
    pub const GOFISH: &str = "gofish";
    /// Intel AMT.
    pub const INTEL_AMT: &str = "IntelAMT";
    /// Dell.
    pub const DELL: &str = "dell";
    /// Supermicro.
    pub const SUPERMICRO: &str = "supermicro";
    /// OpenBMC.
    pub const OPENBMC: &str = "openbmc";
    /// Every known value, in bmclib's default order.
    pub const ALL: &[&str] = &[
        IPMITOOL, ASROCKRACK, GOFISH, INTEL_AMT, DELL, SUPERMICRO, OPENBMC,
    ];
}

/// Known values of a bmc condition's `status`.
pub mod condition_status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// Every known value.
    pub const ALL: &[&str] = &[TRUE, FALSE];
}

/// Known values of `MachineCondition.type`.
pub mod machine_condition_type {
    /// A connection to the BMC can be made.
    pub const CONTACTABLE: &str = "Contactable";
    /// Every known value.
    pub const ALL: &[&str] = &[CONTACTABLE];
}

/// Known values of `JobCondition.type`.
pub mod job_condition_type {
    /// Every task succeeded.
    pub const COMPLETED: &str = "Completed";
    /// A task failed.
    pub const FAILED: &str = "Failed";
    /// The Job is running.
    pub const RUNNING: &str = "Running";
    /// Every known value.
    pub const ALL: &[&str] = &[COMPLETED, FAILED, RUNNING];
}

/// Known values of `TaskCondition.type`.
pub mod task_condition_type {
    /// The Task succeeded.
    pub const COMPLETED: &str = "Completed";
    /// The Task failed.
    pub const FAILED: &str = "Failed";
    /// Every known value.
    pub const ALL: &[&str] = &[COMPLETED, FAILED];
}

// ---------------------------------------------------------------------------------------------
// Machine

resource_spec! {
    /// Desired state of a bmc Machine (`spec`).
    #[kube(
        group = "bmc.tinkerbell.org",
        kind = "Machine",
        singular = "machine",
        plural = "machines",
        status = "MachineStatus",
        doc = "Machine is a baseboard management controller (BMC) and how to reach it."
    )]
    #[schemars(extend("required" = ["connection"]))]
    pub struct MachineSpec {
        /// How to reach the BMC.
        connection: Connection,
    }
}

model_struct! {
    /// Connection data for a BMC.
    #[schemars(extend("required" = ["host", "insecureTLS"]))]
    #[serde(rename_all = "camelCase")]
    pub struct Connection {
        /// IP address or host name of the BMC.
        #[schemars(extend("minLength" = 1))]
        host: String,
        /// Port of the BMC.
        #[schemars(extend("default" = 623))]
        port: i64,
        /// Secret holding the `username` and `password` keys (not needed for the RPC
        /// provider).
        auth_secret_ref: SecretReference,
        /// Skip TLS verification.
        #[serde(rename = "insecureTLS")]
        insecure_tls: bool,
        /// Provider specific options.
        provider_options: ProviderOptions,
    }
}

model_struct! {
    /// A reference to a Secret in any namespace (Kubernetes `SecretReference`).
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub struct SecretReference {
        /// Name of the Secret.
        name: String,
        /// Namespace of the Secret.
        namespace: String,
    }
}

model_struct! {
    /// bmclib provider specific options.
    #[serde(rename_all = "camelCase")]
    pub struct ProviderOptions {
        /// bmclib providers to try first (case insensitive: ipmitool, asrockrack, gofish,
        /// IntelAMT, dell, supermicro, openbmc); the rest follow in the default order.
        #[schemars(extend("items" = {
            "type": "string",
            "pattern": "(?i)^(ipmitool|asrockrack|gofish|IntelAMT|dell|supermicro|openbmc)$",
        }))]
        preferred_order: Vec<String>,
        /// Intel AMT options.
        #[serde(rename = "intelAMT")]
        intel_amt: IntelAmtOptions,
        /// ipmitool options.
        ipmitool: IpmitoolOptions,
        /// Redfish options.
        redfish: RedfishOptions,
        /// RPC provider options.
        rpc: RpcOptions,
        /// Home Assistant provider options.
        homeassistant: HomeAssistantOptions,
    }
}

model_struct! {
    /// Redfish provider options.
    #[serde(rename_all = "camelCase")]
    pub struct RedfishOptions {
        /// Port.
        port: i64,
        /// Use HTTP basic auth instead of session tokens.
        use_basic_auth: bool,
        /// System to manage when one endpoint manages several.
        system_name: String,
    }
}

model_struct! {
    /// ipmitool provider options.
    #[serde(rename_all = "camelCase")]
    pub struct IpmitoolOptions {
        /// Port.
        port: i64,
        /// Cipher suite (`-C`).
        cipher_suite: String,
    }
}

model_struct! {
    /// Intel AMT provider options.
    #[serde(rename_all = "camelCase")]
    pub struct IntelAmtOptions {
        /// Port.
        port: i64,
        /// `http` or `https`.
        #[schemars(extend("enum" = ["http", "https"], "default" = "http"))]
        host_scheme: String,
    }
}

model_struct! {
    /// RPC provider options (webhook-style BMC).
    #[schemars(extend("required" = ["consumerURL"]))]
    #[serde(rename_all = "camelCase")]
    pub struct RpcOptions {
        /// URL of the RPC consumer.
        #[serde(rename = "consumerURL")]
        consumer_url: String,
        /// Do not log consumer responses.
        log_notifications_disabled: bool,
        /// HTTP request options.
        request: RequestOpts,
        /// Signature header options.
        signature: SignatureOpts,
        /// HMAC options.
        hmac: HmacOpts,
        /// Experimental options.
        experimental: ExperimentalOpts,
    }
}

model_struct! {
    /// Home Assistant provider options.
    #[schemars(extend("required" = ["switchEntityID"]))]
    #[serde(rename_all = "camelCase")]
    pub struct HomeAssistantOptions {
        /// Entity ID of the switch controlling power.
        #[serde(rename = "switchEntityID")]
        switch_entity_id: String,
        /// Seconds to wait after a power operation.
        power_operation_delay_seconds: u32,
    }
}

model_struct! {
    /// HTTP request options of the RPC provider.
    #[serde(rename_all = "camelCase")]
    pub struct RequestOpts {
        /// Content type.
        http_content_type: String,
        /// HTTP method.
        http_method: String,
        /// Headers added to every request.
        static_headers: BTreeMap<String, Vec<String>>,
        /// Time format of the timestamp header.
        timestamp_format: String,
        /// Name of the timestamp header.
        timestamp_header: String,
    }
}

model_struct! {
    /// Signature header options of the RPC provider.
    #[serde(rename_all = "camelCase")]
    pub struct SignatureOpts {
        /// Name of the signature header.
        header_name: String,
        /// Do not append the algorithm to the header name.
        append_algo_to_header_disabled: bool,
        /// Headers whose values are included in the signed payload.
        included_payload_headers: Vec<String>,
    }
}

model_struct! {
    /// HMAC options of the RPC provider.
    #[serde(rename_all = "camelCase")]
    pub struct HmacOpts {
        /// Do not prefix the signature with the algorithm.
        prefix_sig_disabled: bool,
        /// Secrets per algorithm (e.g. `sha256`).
        secrets: BTreeMap<String, Vec<SecretReference>>,
    }
}

model_struct! {
    /// Experimental options of the RPC provider.
    #[serde(rename_all = "camelCase")]
    pub struct ExperimentalOpts {
        /// Custom request payload (JSON).
        custom_request_payload: String,
        /// Dot path where the bmclib payload is embedded in the custom payload.
        dot_path: String,
    }
}

model_struct! {
    /// Observed state of a Machine (`status`).
    #[serde(rename_all = "camelCase")]
    pub struct MachineStatus {
        /// Power state: `on`, `off` or `unknown`.
        #[schemars(extend("enum" = ["on", "off", "unknown"]))]
        power_state: String,
        /// Conditions.
        conditions: Vec<MachineCondition>,
    }
}

model_struct! {
    /// A condition of a Machine.
    #[schemars(extend("required" = ["status", "type"]))]
    #[serde(rename_all = "camelCase")]
    pub struct MachineCondition {
        /// Condition type: `Contactable`.
        #[serde(rename = "type")]
        type_: String,
        /// `True` or `False`.
        status: String,
        /// When the condition last changed.
        last_update_time: Time,
        /// Human readable details.
        message: String,
    }
}

// ---------------------------------------------------------------------------------------------
// Actions (shared by Job, Task and Workflow customboot)

model_struct! {
    /// One BMC action. Exactly one field is set.
    #[schemars(extend("maxProperties" = 1))]
    #[serde(rename_all = "camelCase")]
    pub struct Action {
        /// Power operation: `on`, `off` (hard), `soft`, `cycle`, `reset` or `status`.
        #[schemars(extend("enum" = ["on", "off", "soft", "status", "cycle", "reset"]))]
        power_action: String,
        /// Deprecated one-time boot device; use `bootDevice`.
        one_time_boot_device_action: OneTimeBootDeviceAction,
        /// Set the first boot device.
        boot_device: BootDeviceConfig,
        /// Insert or eject virtual media.
        virtual_media_action: VirtualMediaAction,
        /// Enable or disable UEFI Secure Boot.
        secure_boot: SecureBootAction,
        /// Reset all Secure Boot key databases.
        secure_boot_reset_keys: SecureBootResetKeysAction,
        /// Reset one Secure Boot key database.
        secure_boot_database_reset_keys: SecureBootDatabaseResetKeysAction,
        /// Import a certificate into one Secure Boot key database.
        secure_boot_certificate_import: SecureBootCertificateImportAction,
    }
}

model_struct! {
    /// Deprecated one-time boot device action (only the first device is used).
    #[schemars(extend("required" = ["device"]))]
    #[serde(rename_all = "camelCase")]
    pub struct OneTimeBootDeviceAction {
        /// Boot devices (`pxe`, `disk`, `bios`, `cdrom`, `safe`); only the first is used.
        #[serde(rename = "device")]
        devices: Vec<String>,
        /// Use EFI boot.
        efi_boot: bool,
    }
}

model_struct! {
    /// Boot device configuration.
    #[serde(rename_all = "camelCase")]
    pub struct BootDeviceConfig {
        /// Device to boot first: `pxe`, `disk`, `bios`, `cdrom` or `safe`.
        device: String,
        /// Persist the setting instead of applying it to the next boot only.
        persistent: bool,
        /// Use EFI boot.
        efi_boot: bool,
    }
}

model_struct! {
    /// Virtual media insert / eject.
    #[schemars(extend("required" = ["kind"]))]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualMediaAction {
        /// URL of the image to insert; empty to eject.
        #[serde(rename = "mediaURL")]
        media_url: String,
        /// Kind of media: `CD`.
        kind: String,
    }
}

model_struct! {
    /// Enable or disable UEFI Secure Boot.
    #[schemars(extend("required" = ["enable"]))]
    pub struct SecureBootAction {
        /// Whether Secure Boot is enabled.
        enable: bool,
    }
}

model_struct! {
    /// Reset the UEFI Secure Boot key databases.
    #[schemars(extend("required" = ["resetType"]))]
    #[serde(rename_all = "camelCase")]
    pub struct SecureBootResetKeysAction {
        /// Kind of reset: `ResetAllKeysToDefault`, `DeleteAllKeys` or `DeletePK`.
        #[schemars(extend("enum" = ["ResetAllKeysToDefault", "DeleteAllKeys", "DeletePK"]))]
        reset_type: String,
    }
}

model_struct! {
    /// Reset one UEFI Secure Boot key database.
    #[schemars(extend("required" = ["database", "resetType"]))]
    #[serde(rename_all = "camelCase")]
    pub struct SecureBootDatabaseResetKeysAction {
        /// Database (e.g. `db`, `KEK`).
        database: String,
        /// Kind of reset (`ResetAllKeysToDefault` or `DeleteAllKeys`).
        #[schemars(extend("enum" = ["ResetAllKeysToDefault", "DeleteAllKeys"]))]
        reset_type: String,
    }
}

model_struct! {
    /// Import a certificate into one UEFI Secure Boot key database.
    #[schemars(extend("required" = ["certificatePEMConfigMapRef", "database"]))]
    pub struct SecureBootCertificateImportAction {
        /// Database (e.g. `db`, `KEK`).
        database: String,
        /// ConfigMap key holding the PEM certificate.
        #[serde(rename = "certificatePEMConfigMapRef")]
        certificate_pem_config_map_ref: ConfigMapKeyReference,
    }
}

model_struct! {
    /// A key of a ConfigMap.
    #[schemars(extend("required" = ["key", "name", "namespace"]))]
    pub struct ConfigMapKeyReference {
        /// Name of the ConfigMap.
        name: String,
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Key in the ConfigMap's data.
        key: String,
    }
}

// ---------------------------------------------------------------------------------------------
// Job

resource_spec! {
    /// Desired state of a bmc Job (`spec`).
    #[kube(
        group = "bmc.tinkerbell.org",
        kind = "Job",
        singular = "job",
        plural = "jobs",
        shortname = "j",
        status = "JobStatus",
        doc = "Job runs a list of BMC actions, in order, against a Machine."
    )]
    #[schemars(extend("required" = ["machineRef", "tasks"]))]
    #[serde(rename_all = "camelCase")]
    pub struct JobSpec {
        /// The Machine to run the actions against.
        machine_ref: MachineRef,
        /// Actions, run in order; the Job stops at the first failure.
        #[schemars(extend("minItems" = 1))]
        tasks: Vec<Action>,
    }
}

model_struct! {
    /// Reference to a Machine.
    #[schemars(extend("required" = ["name", "namespace"]))]
    pub struct MachineRef {
        /// Name of the Machine.
        name: String,
        /// Namespace of the Machine.
        namespace: String,
    }
}

model_struct! {
    /// Observed state of a Job (`status`).
    #[serde(rename_all = "camelCase")]
    pub struct JobStatus {
        /// Conditions.
        conditions: Vec<JobCondition>,
        /// When the controller started the Job.
        start_time: Time,
        /// When the Job completed successfully.
        completion_time: Time,
    }
}

model_struct! {
    /// A condition of a Job.
    #[schemars(extend("required" = ["status", "type"]))]
    pub struct JobCondition {
        /// Condition type: `Running`, `Completed` or `Failed`.
        #[serde(rename = "type")]
        type_: String,
        /// `True` or `False`.
        status: String,
        /// Human readable details.
        message: String,
    }
}

// ---------------------------------------------------------------------------------------------
// Task

resource_spec! {
    /// Desired state of a bmc Task (`spec`).
    #[kube(
        group = "bmc.tinkerbell.org",
        kind = "Task",
        singular = "task",
        plural = "tasks",
        shortname = "t",
        status = "TaskStatus",
        doc = "Task is one BMC action of a Job."
    )]
    #[schemars(extend("required" = ["task"]))]
    pub struct TaskSpec {
        /// The action.
        task: Action,
        /// Connection to the BMC, copied from the Machine.
        connection: Connection,
    }
}

model_struct! {
    /// Observed state of a Task (`status`).
    #[serde(rename_all = "camelCase")]
    pub struct TaskStatus {
        /// Conditions.
        conditions: Vec<TaskCondition>,
        /// When the Task started.
        start_time: Time,
        /// When the Task completed successfully.
        completion_time: Time,
    }
}

model_struct! {
    /// A condition of a Task.
    #[schemars(extend("required" = ["status", "type"]))]
    pub struct TaskCondition {
        /// Condition type: `Completed` or `Failed`.
        #[serde(rename = "type")]
        type_: String,
        /// `True` or `False`.
        status: String,
        /// Human readable details.
        message: String,
    }
}
