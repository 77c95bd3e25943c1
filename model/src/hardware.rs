//! `tinkerbell.org/v1alpha1` Hardware: one physical machine, its network interfaces (DHCP and
//! netboot settings), disks, instance metadata served to the OS, and the inventory Tinkerbell
//! has observed.
//!
//! Mirrors upstream `api/v1alpha1/tinkerbell/hardware.go`. Note upstream's key styles: the
//! `dhcp` section and everything under `spec.metadata` use `snake_case` keys (`lease_time`,
//! `allow_pxe`, …), the rest uses `camelCase` (`allowPXE`, `agentID`, `bmcRef`, …).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Known values of `Hardware.status.state`.
pub mod hardware_state {
    /// The Hardware is usable.
    pub const READY: &str = "Ready";
    /// The Hardware is in an error state.
    pub const ERROR: &str = "Error";
    /// Every known value.
    pub const ALL: &[&str] = &[READY, ERROR];
}

resource_spec! {
    /// Desired state of a Hardware (`spec`).
    #[kube(
        group = "tinkerbell.org",
        kind = "Hardware",
        singular = "hardware",
        plural = "hardware",
        shortname = "hw",
        status = "HardwareStatus",
        doc = "Hardware is a physical machine managed by Tinkerbell.",
        printcolumn(name = "State", type_ = "string", json_path = ".status.state")
    )]
    #[serde(rename_all = "camelCase")]
    pub struct HardwareSpec {
        /// Identifier the agent running on this machine reports (typically the MAC address of
        /// the primary interface); used for discovery and enrollment.
        #[serde(rename = "agentID")]
        agent_id: String,
        /// Automatic capabilities (auto-enrollment).
        auto: AutoCapabilities,
        /// Reference to the BMC object (normally a bmc.tinkerbell.org Machine) in the same
        /// namespace.
        bmc_ref: TypedLocalObjectRef,
        /// Network interfaces.
        interfaces: Vec<Interface>,
        /// Named references to arbitrary objects, exposed to templates as `.references.<name>`.
        references: BTreeMap<String, Reference>,
        /// Instance and facility metadata (the Equinix Metal style metadata served by Hegel).
        metadata: HardwareMetadata,
        /// Legacy tink version field.
        tink_version: i64,
        /// Disks of the machine.
        disks: Vec<Disk>,
        /// Known resources of the machine (name to Kubernetes quantity), usable for scheduling.
        #[schemars(schema_with = "crate::quantity_map_schema")]
        resources: BTreeMap<String, serde_json::Value>,
        /// User data served in the machine's metadata.
        user_data: String,
        /// Vendor data served in the machine's metadata.
        vendor_data: String,
    }
}

model_struct! {
    /// A typed reference to an object in the same namespace (Kubernetes
    /// `TypedLocalObjectReference`).
    #[schemars(extend("required" = ["kind", "name"], "x-kubernetes-map-type" = "atomic"))]
    #[serde(rename_all = "camelCase")]
    pub struct TypedLocalObjectRef {
        /// API group of the referenced kind; empty for the core group.
        api_group: String,
        /// Kind of the referenced object.
        kind: String,
        /// Name of the referenced object.
        name: String,
    }
}

model_struct! {
    /// Automatic capabilities of a Hardware.
    #[serde(rename_all = "camelCase")]
    pub struct AutoCapabilities {
        /// Whether auto-enrollment may create Workflows for this Hardware.
        #[schemars(extend("default" = false))]
        enrollment_enabled: bool,
    }
}

model_struct! {
    /// A reference to an object of any kind, made available to templates.
    pub struct Reference {
        /// Namespace of the referent.
        namespace: String,
        /// Name of the referent.
        name: String,
        /// API group of the referent.
        group: String,
        /// API version of the referent.
        version: String,
        /// Resource (lower-case plural kind) of the referent.
        resource: String,
    }
}

model_struct! {
    /// One network interface of a Hardware.
    #[serde(rename_all = "camelCase")]
    pub struct Interface {
        /// Network boot settings.
        netboot: Netboot,
        /// ISO boot settings.
        isoboot: Isoboot,
        /// DHCP settings.
        dhcp: Dhcp,
        /// Disables DHCP for this interface.
        #[schemars(extend("default" = false))]
        disable_dhcp: bool,
    }
}

model_struct! {
    /// Network boot settings of an interface.
    pub struct Netboot {
        /// Whether the machine may PXE boot.
        #[serde(rename = "allowPXE")]
        allow_pxe: bool,
        /// Whether workflows may run on the machine.
        #[serde(rename = "allowWorkflow")]
        allow_workflow: bool,
        /// iPXE settings.
        ipxe: Ipxe,
        /// Operating System Installation Environment (OSIE, e.g. HookOS) settings.
        osie: Osie,
        /// PXELINUX (u-boot `pxelinux.cfg`) settings.
        pxelinux: Pxelinux,
        /// Raspberry Pi firmware network boot settings.
        rpi: Rpi,
    }
}

model_struct! {
    /// iPXE settings.
    pub struct Ipxe {
        /// URL of an iPXE script to chain to.
        url: String,
        /// Inline iPXE script.
        contents: String,
        /// iPXE binary to serve instead of the architecture default (`undionly.kpxe`,
        /// `ipxe.efi`, `snp-arm64.efi`, `snp-x86_64.efi`).
        binary: String,
    }
}

model_struct! {
    /// OSIE (Operating System Installation Environment) settings.
    pub struct Osie {
        /// Base URL the kernel and initrd are fetched from.
        #[serde(rename = "baseURL")]
        base_url: String,
        /// Kernel file name.
        kernel: String,
        /// Initrd file name.
        initrd: String,
        /// Kernel command line parameters replacing the defaults; also the Raspberry Pi
        /// `cmdline.txt` (joined with spaces).
        #[serde(rename = "kernelParams")]
        kernel_params: Vec<String>,
    }
}

model_struct! {
    /// PXELINUX boot settings: Smee generates `pxelinux.cfg` (extlinux format) from these.
    pub struct Pxelinux {
        /// extlinux-format configuration replacing the default.
        config: String,
    }
}

model_struct! {
    /// Raspberry Pi EEPROM network boot settings (files are requested under the Pi's serial
    /// number).
    #[schemars(extend("required" = ["serialNum"]))]
    #[serde(rename_all = "camelCase")]
    pub struct Rpi {
        /// Content served as `config.txt`.
        config_txt: String,
        /// Path firmware files are served from instead of the default.
        firmware_path: String,
        /// Serial number of the Pi (full, or its last 8 characters).
        serial_num: String,
    }
}

model_struct! {
    /// ISO boot settings.
    pub struct Isoboot {
        /// HTTP(S) URL of the OSIE (HookOS) ISO.
        #[serde(rename = "sourceISO")]
        #[schemars(extend("format" = "uri"))]
        source_iso: String,
    }
}

model_struct! {
    /// DHCP settings of an interface. Keys are `snake_case` upstream.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "(has(self.tftp_server_name) && self.tftp_server_name != \"\") == (has(self.boot_file_name) && self.boot_file_name != \"\")",
        "message": "TFTPServerName and BootFileName must both be specified or both be empty",
    }]))]
    pub struct Dhcp {
        /// MAC address, lower-case and colon separated.
        #[schemars(extend("pattern" = "([0-9a-f]{2}[:]){5}([0-9a-f]{2})"))]
        mac: String,
        /// Host name (option 12).
        hostname: String,
        /// Domain name (option 15).
        domain_name: String,
        /// Lease time in seconds.
        lease_time: i64,
        /// DNS servers (option 6).
        name_servers: Vec<String>,
        /// NTP servers (option 42).
        time_servers: Vec<String>,
        /// Architecture (e.g. `x86_64`, `aarch64`).
        arch: String,
        /// Whether the machine boots in UEFI mode.
        uefi: bool,
        /// Interface name.
        iface_name: String,
        /// Address assignment.
        ip: Ip,
        /// VLAN ID(s), a string of numbers between 0 and 4096.
        #[schemars(extend(
            "pattern" = "^(([0-9][0-9]{0,2}|[1-3][0-9][0-9][0-9]|40([0-8][0-9]|9[0-6]))(,[1-9][0-9]{0,2}|[1-3][0-9][0-9][0-9]|40([0-8][0-9]|9[0-6]))*)$"
        ))]
        vlan_id: String,
        /// Classless static routes (option 121, RFC 3442).
        classless_static_routes: Vec<ClasslessStaticRoute>,
        /// TFTP server name (option 66); requires `boot_file_name`.
        tftp_server_name: String,
        /// Boot file name (option 67); requires `tftp_server_name`.
        boot_file_name: String,
    }
}

model_struct! {
    /// IP address assignment of an interface.
    pub struct Ip {
        /// IP address.
        address: String,
        /// Netmask (dotted quad).
        netmask: String,
        /// Default gateway.
        gateway: String,
        /// Address family (4 or 6).
        family: i64,
    }
}

model_struct! {
    /// A classless static route (DHCP option 121).
    #[schemars(extend("required" = ["destination_descriptor", "router"]))]
    pub struct ClasslessStaticRoute {
        /// Destination network as `address/prefix`, e.g. `10.0.0.0/8`.
        #[schemars(extend(
            "pattern" = "^((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)/(3[0-2]|[12]?[0-9])$"
        ))]
        destination_descriptor: String,
        /// Router address for the route.
        #[schemars(extend(
            "pattern" = "^((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)$"
        ))]
        router: String,
    }
}

model_struct! {
    /// `spec.metadata`: instance and facility metadata. Keys are `snake_case` upstream.
    pub struct HardwareMetadata {
        /// Machine state.
        state: String,
        /// Bonding mode.
        bonding_mode: i64,
        /// Manufacturer.
        manufacturer: MetadataManufacturer,
        /// The instance (OS install) on the machine.
        instance: MetadataInstance,
        /// Custom data.
        custom: MetadataCustom,
        /// Facility (site / plan) data.
        facility: MetadataFacility,
    }
}

model_struct! {
    /// Manufacturer metadata.
    pub struct MetadataManufacturer {
        /// Manufacturer ID.
        id: String,
        /// Manufacturer slug.
        slug: String,
    }
}

model_struct! {
    /// Instance metadata, served to the installed OS by Hegel.
    pub struct MetadataInstance {
        /// Instance ID.
        id: String,
        /// Instance state.
        state: String,
        /// Host name.
        hostname: String,
        /// Whether PXE booting is allowed.
        allow_pxe: bool,
        /// Whether the machine is in rescue mode.
        rescue: bool,
        /// Operating system of the instance.
        operating_system: MetadataInstanceOperatingSystem,
        /// Whether the machine always PXE boots.
        always_pxe: bool,
        /// URL of a custom iPXE script.
        ipxe_script_url: String,
        /// Addresses of the instance.
        ips: Vec<MetadataInstanceIp>,
        /// User data.
        userdata: String,
        /// Crypted root password.
        crypted_root_password: String,
        /// Tags.
        tags: Vec<String>,
        /// Storage layout.
        storage: MetadataInstanceStorage,
        /// Authorised SSH public keys.
        ssh_keys: Vec<String>,
        /// Whether the network is ready.
        network_ready: bool,
    }
}

model_struct! {
    /// Operating system metadata.
    pub struct MetadataInstanceOperatingSystem {
        /// OS slug.
        slug: String,
        /// Distribution.
        distro: String,
        /// Version.
        version: String,
        /// Image tag.
        image_tag: String,
        /// OS slug (alternate).
        os_slug: String,
    }
}

model_struct! {
    /// An address of the instance.
    pub struct MetadataInstanceIp {
        /// IP address.
        address: String,
        /// Netmask.
        netmask: String,
        /// Gateway.
        gateway: String,
        /// Address family (4 or 6).
        family: i64,
        /// Whether the address is public.
        public: bool,
        /// Whether the address is for management.
        management: bool,
    }
}

model_struct! {
    /// Storage layout of the instance.
    pub struct MetadataInstanceStorage {
        /// Disks.
        disks: Vec<MetadataInstanceStorageDisk>,
        /// RAID arrays.
        raid: Vec<MetadataInstanceStorageRaid>,
        /// File systems.
        filesystems: Vec<MetadataInstanceStorageFilesystem>,
    }
}

model_struct! {
    /// A disk of the storage layout.
    pub struct MetadataInstanceStorageDisk {
        /// Device path.
        device: String,
        /// Whether to wipe the partition table.
        wipe_table: bool,
        /// Partitions.
        partitions: Vec<MetadataInstanceStorageDiskPartition>,
    }
}

model_struct! {
    /// A partition of a disk.
    pub struct MetadataInstanceStorageDiskPartition {
        /// Label.
        label: String,
        /// Partition number.
        number: i64,
        /// Size.
        size: i64,
        /// Start.
        start: i64,
        /// GPT partition type GUID.
        type_guid: String,
    }
}

model_struct! {
    /// A RAID array.
    pub struct MetadataInstanceStorageRaid {
        /// Array name.
        name: String,
        /// RAID level.
        level: String,
        /// Member devices.
        devices: Vec<String>,
        /// Number of spares.
        spare: i64,
    }
}

model_struct! {
    /// A file system.
    pub struct MetadataInstanceStorageFilesystem {
        /// Mount settings.
        mount: MetadataInstanceStorageMount,
    }
}

model_struct! {
    /// Mount settings of a file system.
    pub struct MetadataInstanceStorageMount {
        /// Device.
        device: String,
        /// File system format.
        format: String,
        /// Files to create.
        files: Vec<MetadataInstanceStorageFile>,
        /// File system creation options.
        create: MetadataInstanceStorageMountFilesystemOptions,
        /// Mount point.
        point: String,
    }
}

model_struct! {
    /// A file to create on a file system.
    pub struct MetadataInstanceStorageFile {
        /// Path.
        path: String,
        /// Contents.
        contents: String,
        /// Mode.
        mode: i64,
        /// Owner user ID.
        uid: i64,
        /// Owner group ID.
        gid: i64,
    }
}

model_struct! {
    /// File system creation options.
    pub struct MetadataInstanceStorageMountFilesystemOptions {
        /// Force creation.
        force: bool,
        /// mkfs options.
        options: Vec<String>,
    }
}

model_struct! {
    /// Custom metadata.
    pub struct MetadataCustom {
        /// Preinstalled operating system.
        preinstalled_operating_system_version: MetadataInstanceOperatingSystem,
        /// Private subnets.
        private_subnets: Vec<String>,
    }
}

model_struct! {
    /// Facility metadata.
    pub struct MetadataFacility {
        /// Plan slug.
        plan_slug: String,
        /// Plan version slug.
        plan_version_slug: String,
        /// Facility code.
        facility_code: String,
    }
}

model_struct! {
    /// A disk of the machine.
    pub struct Disk {
        /// Device path, e.g. `/dev/sda`.
        device: String,
    }
}

model_struct! {
    /// Observed state of a Hardware (`status`).
    pub struct HardwareStatus {
        /// State: `Ready` or `Error`.
        state: String,
        /// Observed hardware inventory.
        attributes: HardwareAttributes,
    }
}

model_struct! {
    /// Observed inventory, one subtree per collection path.
    #[serde(rename_all = "camelCase")]
    pub struct HardwareAttributes {
        /// Collected through the BMC (Redfish or vendor API).
        out_of_band: Attributes,
        /// Reported by the agent from inside the running OS.
        in_band: Attributes,
    }
}

model_struct! {
    /// Description of a machine's hardware, as reported by one collection path.
    #[serde(rename_all = "camelCase")]
    pub struct Attributes {
        /// When this subtree was last refreshed.
        last_updated: Time,
        /// What produced this subtree: `agent`, or the bmclib driver (e.g. `redfish`).
        collection_method: String,
        /// CPUs.
        cpu: Cpu,
        /// Memory.
        memory: Memory,
        /// Storage drives.
        block_devices: Vec<BlockDevice>,
        /// Network adapters of the host.
        network_interfaces: Vec<NetworkInterface>,
        /// GPUs and accelerators.
        gpu_devices: Vec<GpuDevice>,
        /// PCI devices (in-band only).
        pci_devices: Vec<PciDevice>,
        /// Enclosure.
        chassis: Chassis,
        /// Mainboard.
        baseboard: Baseboard,
        /// System firmware.
        bios: Bios,
        /// System identity.
        product: Product,
        /// The BMC itself (out-of-band only).
        bmc: BmcInfo,
        /// Power supplies (out-of-band only).
        psus: Vec<Psu>,
        /// Trusted platform modules (out-of-band only).
        tpms: Vec<Tpm>,
        /// Storage controllers (out-of-band only).
        storage_controllers: Vec<StorageController>,
    }
}

model_struct! {
    /// CPU totals and sockets.
    #[serde(rename_all = "camelCase")]
    pub struct Cpu {
        /// Total cores.
        total_cores: u32,
        /// Total threads.
        total_threads: u32,
        /// Physical CPUs.
        sockets: Vec<CpuSocket>,
    }
}

model_struct! {
    /// One physical CPU.
    #[serde(rename_all = "camelCase")]
    pub struct CpuSocket {
        /// Socket (e.g. `CPU1`) or processor ID.
        slot: String,
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Cores.
        cores: u32,
        /// Threads.
        threads: u32,
        /// Clock speed in MHz.
        #[serde(rename = "clockSpeedMHz")]
        clock_speed_mhz: u32,
        /// Serial number.
        serial_number: String,
        /// Feature flags (in-band only).
        capabilities: Vec<String>,
        /// Firmware version.
        firmware_version: String,
    }
}

model_struct! {
    /// Memory totals and modules.
    #[serde(rename_all = "camelCase")]
    pub struct Memory {
        /// Installed memory in bytes.
        total_bytes: i64,
        /// Memory usable by the OS in bytes (in-band only).
        usable_bytes: i64,
        /// Memory modules (out-of-band only).
        modules: Vec<MemoryModule>,
    }
}

model_struct! {
    /// One memory module.
    #[serde(rename_all = "camelCase")]
    pub struct MemoryModule {
        /// Slot (e.g. `DIMM.A1`).
        slot: String,
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Part number.
        part_number: String,
        /// Size in bytes.
        size_bytes: i64,
        /// Speed in MHz.
        #[serde(rename = "speedMHz")]
        speed_mhz: u32,
        /// Form factor.
        form_factor: String,
        /// Firmware version.
        firmware_version: String,
    }
}

model_struct! {
    /// A storage drive.
    #[serde(rename_all = "camelCase")]
    pub struct BlockDevice {
        /// OS device name (in-band only).
        name: String,
        /// Controller type.
        controller_type: String,
        /// Drive type.
        drive_type: String,
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// World Wide Name.
        wwn: String,
        /// Topology path (udev `ID_PATH`, in-band only).
        path: String,
        /// Size in bytes.
        size_bytes: i64,
        /// Physical block size in bytes.
        physical_block_size_bytes: i64,
        /// SMART health status (out-of-band only).
        smart_status: String,
        /// Firmware version.
        firmware_version: String,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// A network adapter and its ports.
    #[serde(rename_all = "camelCase")]
    pub struct NetworkInterface {
        /// OS interface name (in-band only).
        name: String,
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Firmware version.
        firmware_version: String,
        /// Physical ports.
        ports: Vec<NetworkPort>,
    }
}

model_struct! {
    /// A physical port of a network adapter.
    #[serde(rename_all = "camelCase")]
    pub struct NetworkPort {
        /// Port ID as the BMC names it (out-of-band only).
        #[serde(rename = "portID")]
        port_id: String,
        /// MAC address.
        mac: String,
        /// Link speed in Mbit/s.
        speed_mbps: u32,
        /// MTU.
        mtu: u32,
        /// Link status.
        link_status: String,
        /// Enabled offloads and features (in-band only).
        enabled_capabilities: Vec<String>,
    }
}

model_struct! {
    /// A GPU or accelerator.
    #[serde(rename_all = "camelCase")]
    pub struct GpuDevice {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Description.
        description: String,
        /// PCI class (in-band only).
        class: String,
        /// Kernel driver (in-band only).
        driver: String,
        /// Firmware version.
        firmware_version: String,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// A PCI device (in-band only).
    pub struct PciDevice {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// PCI class.
        class: String,
        /// Kernel driver.
        driver: String,
    }
}

model_struct! {
    /// The enclosure.
    #[serde(rename_all = "camelCase")]
    pub struct Chassis {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
    }
}

model_struct! {
    /// The mainboard.
    #[serde(rename_all = "camelCase")]
    pub struct Baseboard {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Description.
        description: String,
        /// Firmware version.
        firmware_version: String,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// The system firmware.
    #[serde(rename_all = "camelCase")]
    pub struct Bios {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Firmware version.
        firmware_version: String,
        /// Release date as reported (in-band only).
        release_date: String,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// The overall system identity.
    #[serde(rename_all = "camelCase")]
    pub struct Product {
        /// Product name.
        name: String,
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Health and state (including POST codes).
        status: ComponentStatus,
    }
}

model_struct! {
    /// The BMC's own firmware and management NIC (upstream `BMC`, key `bmc`).
    #[serde(rename_all = "camelCase")]
    pub struct BmcInfo {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Firmware version.
        firmware_version: String,
        /// The BMC's management network interface.
        nic: NetworkInterface,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// A power supply unit.
    #[serde(rename_all = "camelCase")]
    pub struct Psu {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Description.
        description: String,
        /// Firmware version.
        firmware_version: String,
        /// Capacity in watts.
        power_capacity_watts: i64,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// A trusted platform module.
    #[serde(rename_all = "camelCase")]
    pub struct Tpm {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Interface type (e.g. `TPM2_0`).
        interface_type: String,
        /// Firmware version.
        firmware_version: String,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// A storage controller.
    #[serde(rename_all = "camelCase")]
    pub struct StorageController {
        /// Vendor.
        vendor: String,
        /// Model.
        model: String,
        /// Serial number.
        serial_number: String,
        /// Description.
        description: String,
        /// Firmware version.
        firmware_version: String,
        /// Health and state.
        status: ComponentStatus,
    }
}

model_struct! {
    /// Health and state of a component.
    #[serde(rename_all = "camelCase")]
    pub struct ComponentStatus {
        /// Health.
        health: String,
        /// State.
        state: String,
        /// POST code (0 means success; only on `product`).
        post_code: i32,
        /// POST code status (only on `product`).
        post_code_status: String,
    }
}

/// `Some(s)` when `s` is set and not empty.
fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The annotation `tinkerbell move` uses to hand a machine's DHCP over from one appliance to
/// another without two servers answering it at once: `moved-out` on the source once the
/// machine is copied, `incoming` on the target until the source has stopped. boots answers no
/// DHCP for a Hardware that carries it (with any value).
pub const DHCP_HANDOFF_ANNOTATION: &str = "move.tinkerbell.org/dhcp-handoff";
/// [`DHCP_HANDOFF_ANNOTATION`] value on the source: the machine now belongs to another store.
pub const HANDOFF_MOVED_OUT: &str = "moved-out";
/// [`DHCP_HANDOFF_ANNOTATION`] value on the target while the source may still be answering.
pub const HANDOFF_INCOMING: &str = "incoming";

impl Hardware {
    /// Whether DHCP for this machine is on hold because of a move in progress or done
    /// ([`DHCP_HANDOFF_ANNOTATION`]).
    pub fn dhcp_on_hold(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(DHCP_HANDOFF_ANNOTATION))
    }

    /// Interfaces of the Hardware (empty when none).
    pub fn interfaces(&self) -> &[Interface] {
        self.spec.interfaces.as_deref().unwrap_or_default()
    }

    /// MAC addresses of all interfaces with a dhcp section, lower-cased, in order.
    ///
    /// Interfaces whose dhcp section has no (or an empty) `mac` are skipped.
    pub fn macs(&self) -> Vec<String> {
        self.interfaces()
            .iter()
            .filter_map(|iface| iface.dhcp.as_ref())
            .filter_map(|dhcp| dhcp.mac.as_deref())
            .map(str::trim)
            .filter(|mac| !mac.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    /// IPv4/IPv6 addresses from `interfaces[].dhcp.ip.address`, in order (raw strings,
    /// trimmed, empty ones skipped).
    pub fn ips(&self) -> Vec<String> {
        self.interfaces()
            .iter()
            .filter_map(|iface| iface.dhcp.as_ref())
            .filter_map(|dhcp| dhcp.ip.as_ref())
            .filter_map(|ip| ip.address.as_deref())
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `spec.agentID` when set and non-empty.
    pub fn agent_id(&self) -> Option<&str> {
        non_empty(&self.spec.agent_id)
    }

    /// `spec.metadata.instance.id` when set and non-empty.
    pub fn instance_id(&self) -> Option<&str> {
        self.spec
            .metadata
            .as_ref()
            .and_then(|m| m.instance.as_ref())
            .and_then(|i| non_empty(&i.id))
    }
}
