//! Import of an EKS Anywhere `hardware.csv` into Tinkerbell objects.
//!
//! EKS Anywhere (`eksctl anywhere create cluster --hardware-csv`, `generate hardware`) describes
//! bare-metal machines in a CSV file and turns every row into a Hardware, plus a bmc Machine and
//! its credentials Secret when the row has BMC details. [`parse_hardware_csv`] reads the same
//! file and produces the same objects, so a file that works with EKS Anywhere works here and
//! the appliance serves those machines exactly as an EKS Anywhere cluster's Tinkerbell would.
//!
//! What is mirrored (aws/eks-anywhere `pkg/providers/tinkerbell/hardware/`: `machine.go`,
//! `csv.go`, `validator.go`, `normalize.go`, `catalogue_hardware.go`, `catalogue_bmc.go`,
//! `catalogue_secret.go`, `fmt.go`, `typemeta.go`):
//!
//! * **Columns** are found by header name, in any order. Required: `hostname`, `ip_address`,
//!   `netmask`, `gateway`, `nameservers` (`|`-separated), `mac`, `disk`, `labels`
//!   (`key=value|key=value`, may be empty). Optional: `bmc_ip`, `bmc_username`,
//!   `bmc_password`, `vlan_id`. The legacy `id` and `vendor` columns of older files are
//!   accepted and ignored, as EKS Anywhere's CSV reader ignores every column it does not know.
//!   Unlike EKS Anywhere, any *other* unknown column is an error: it is nearly always a typo of
//!   a real column, which EKS Anywhere would silently drop.
//! * **Checks** are EKS Anywhere's (`StaticMachineAssertions` and the uniqueness assertions):
//!   the hostname is a DNS-1123 subdomain; `mac` is a MAC address (normalised to lower-case
//!   and colons); `disk` matches `^(/dev/[\w-]+)+$`; label keys and values are valid
//!   Kubernetes label keys and values; `vlan_id` is empty or 1..=4094; if any of `bmc_ip`,
//!   `bmc_username`, `bmc_password` is set, all must be, and `bmc_ip` is an IP address;
//!   hostnames, MACs, IP addresses and BMC IP addresses are unique across rows. Some checks
//!   are stricter than EKS Anywhere's, because the generated objects would otherwise not work
//!   (family 4 is hard-coded): `ip_address` and `gateway` must be IPv4 addresses, `netmask` a
//!   dotted-quad IPv4 netmask with contiguous ones, and every nameserver an IP address.
//!   The gateway is *not* required to be inside the address's subnet (EKS Anywhere does not
//!   require it either).
//! * **Objects** per row, in the namespace given by the caller (EKS Anywhere always uses
//!   `eksa-system`): a Hardware named after the hostname (see [`parse_hardware_csv`] for its
//!   exact shape) and, when the row has BMC details, a `bmc.tinkerbell.org` Machine
//!   `bmc-<hostname>` and a `kubernetes.io/basic-auth` Secret `bmc-<hostname>-auth`.
//!
//! **All or nothing.** Every row is checked and *every* problem is reported, each with its line
//! and column, and nothing is returned for import if there is any: a half-imported inventory
//! (some machines known, others silently missing, BMC credentials for one row but not the
//! next) is worse than none, and fixing a file is quicker when all its mistakes are listed at
//! once rather than one per attempt.
//!
//! BMC passwords are never echoed: no error message and no `Debug` output of this module
//! contains one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use tinkerbell_core::model::names::{MAX_NAME_LEN, is_dns1123_subdomain};
use tinkerbell_core::model::{
    Connection, Dhcp, Disk, Hardware, HardwareMetadata, HardwareSpec, Interface, Ip, Machine,
    MachineSpec, MetadataFacility, MetadataInstance, MetadataInstanceIp,
    MetadataInstanceOperatingSystem, Netboot, ProviderOptions, Secret, SecretReference,
    TypedLocalObjectRef, provider_name,
};
use tinkerbell_core::store::Object;
use tinkerbell_core::store::index::normalize_mac;

/// Columns every file must have.
pub const REQUIRED_COLUMNS: [&str; 8] = [
    "hostname",
    "ip_address",
    "netmask",
    "gateway",
    "nameservers",
    "mac",
    "disk",
    "labels",
];

/// Columns a file may have.
pub const OPTIONAL_COLUMNS: [&str; 4] = ["bmc_ip", "bmc_username", "bmc_password", "vlan_id"];

/// Columns of older EKS Anywhere files that are accepted and ignored.
pub const IGNORED_COLUMNS: [&str; 2] = ["id", "vendor"];

/// The label EKS Anywhere puts on BMC Secrets so `clusterctl move` carries them along.
pub const CLUSTERCTL_MOVE_LABEL: &str = "clusterctl.cluster.x-k8s.io/move";

/// `metadata.facility.facility_code` of every generated Hardware.
const FACILITY_CODE: &str = "onprem";
/// `metadata.facility.plan_slug` of every generated Hardware.
const PLAN_SLUG: &str = "c2.medium.x86";
/// `interfaces[0].dhcp.arch` of every generated Hardware.
const ARCH: &str = "x86_64";
/// `interfaces[0].dhcp.lease_time`: 2^32 - 2 seconds, the longest lease (EKS Anywhere sets it
/// for operating systems that keep using DHCP after provisioning).
const LEASE_TIME: i64 = (1 << 32) - 2;
/// Type of the generated BMC credentials Secret.
const BASIC_AUTH_SECRET_TYPE: &str = "kubernetes.io/basic-auth";

/// The objects generated from a valid file.
pub struct CsvImport {
    /// Every generated object, in an order that can be applied as is: all Secrets, then all bmc
    /// Machines, then all Hardware (each group in file order), so nothing is created before
    /// what it refers to.
    pub objects: Vec<Object>,
    /// Number of data rows (machines) in the file. Rows whose cells are all empty are skipped
    /// and not counted.
    pub rows: usize,
}

impl fmt::Debug for CsvImport {
    /// Lists the objects by kind, namespace and name only, so Secret contents never show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.objects.iter().map(|o| o.key().to_string()).collect();
        f.debug_struct("CsvImport")
            .field("rows", &self.rows)
            .field("objects", &keys)
            .finish()
    }
}

/// One problem in the file.
///
/// Displays as `line 3: mac: "zz" is not a MAC address`, or `line 1: missing required columns:
/// gateway, labels` when the problem is not about one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line of the file where the record starts (the header is line 1 unless blank
    /// lines precede it).
    pub line: usize,
    /// The column the problem is in, by header name, when it is about one column.
    pub column: Option<String>,
    /// What is wrong. Never contains a BMC password.
    pub message: String,
}

impl RowError {
    fn new(line: usize, column: Option<&str>, message: impl Into<String>) -> RowError {
        RowError {
            line,
            column: column.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}: {}: {}", self.line, column, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for RowError {}

/// Every problem found in a file, in line order; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_lines(.0))]
pub struct CsvErrors(pub Vec<RowError>);

/// `errors` one per line.
pub(crate) fn join_lines<E: fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse an EKS Anywhere `hardware.csv` and generate its objects in `namespace`.
///
/// Returns every object, or every problem in the file (see the [module docs](self) for the
/// columns and checks). A file with a header and no rows is valid and yields no objects, as
/// with EKS Anywhere; an empty file (no header) is an error.
///
/// Per row, exactly what EKS Anywhere generates:
///
/// * Hardware `<hostname>` with the row's labels, and `spec`:
///   - `bmcRef: {kind: Machine, name: bmc-<hostname>}` (only when the row has BMC details;
///     no `apiGroup`, as in EKS Anywhere);
///   - `disks: [{device: <disk>}]`;
///   - `metadata.facility: {facility_code: onprem, plan_slug: c2.medium.x86}`;
///   - `metadata.instance: {id: <mac>, hostname, ips: [{address, netmask, gateway, family: 4,
///     public: true}], operating_system: {}, allow_pxe: true, always_pxe: true}` (the empty
///     `operating_system` is deliberate: EKS Anywhere sets it because Boots dereferenced it);
///   - `interfaces: [{netboot: {allowPXE: true, allowWorkflow: true}, dhcp: {arch: x86_64,
///     mac, ip: {address, netmask, gateway, family: 4}, lease_time: 4294967294, hostname,
///     name_servers, uefi: true, vlan_id}}]` (`vlan_id` only when set).
/// * With BMC details, bmc Machine `bmc-<hostname>`: `connection: {host: <bmc_ip>, port: 0,
///   authSecretRef: {name: bmc-<hostname>-auth, namespace}, insecureTLS: true,
///   providerOptions: {preferredOrder: [gofish]}}` (EKS Anywhere prefers Redfish; `port: 0`
///   is what its Go type always writes and means the provider's default), and Secret
///   `bmc-<hostname>-auth` of type `kubernetes.io/basic-auth` with keys `username` and
///   `password` and the label `clusterctl.cluster.x-k8s.io/move: "true"`.
///
/// Left out on purpose: the empty `status: {}` that Go writes on Hardware and Machine. The
/// store applies a status when one is given, so re-importing a file would otherwise wipe what
/// the controllers observed (power state, inventory).
pub fn parse_hardware_csv(input: &str, namespace: &str) -> Result<CsvImport, CsvErrors> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    if input.trim().is_empty() {
        return Err(CsvErrors(vec![RowError::new(
            1,
            None,
            format!(
                "the file is empty; it needs a header line naming the columns (at least {})",
                REQUIRED_COLUMNS.join(", ")
            ),
        )]));
    }

    let mut records = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input.as_bytes())
        .into_records();

    let header = match records.next() {
        Some(Ok(record)) => record,
        Some(Err(e)) => return Err(CsvErrors(vec![csv_error(&e)])),
        None => {
            return Err(CsvErrors(vec![RowError::new(
                1,
                None,
                "the file has no header line",
            )]));
        }
    };
    let columns = Columns::from_header(&header, input)?;

    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut seen = Seen::default();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                errors.push(csv_error(&e));
                continue;
            }
        };
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let line = line_of(&record, input);
        if record.len() != columns.width {
            errors.push(RowError::new(
                line,
                None,
                format!(
                    "expected {} fields (one per header column), found {}",
                    columns.width,
                    record.len()
                ),
            ));
            continue;
        }
        let cells = Cells {
            record: &record,
            columns: &columns,
        };
        if let Some(row) = check_row(line, &cells, &mut seen, &mut errors) {
            rows.push(row);
        }
    }

    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(CsvErrors(errors));
    }

    let mut secrets = Vec::new();
    let mut machines = Vec::new();
    let mut hardware = Vec::new();
    for row in &rows {
        if let Some(bmc) = &row.bmc {
            secrets.push(Object::Secret(Arc::new(bmc_secret(row, bmc, namespace))));
            machines.push(Object::Machine(Arc::new(bmc_machine(row, bmc, namespace))));
        }
        hardware.push(Object::Hardware(Arc::new(hardware_object(row, namespace))));
    }
    let mut objects = secrets;
    objects.append(&mut machines);
    objects.append(&mut hardware);
    Ok(CsvImport {
        objects,
        rows: rows.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The 1-based line a record starts on. The reader reports where it started reading, which is
/// before any blank lines it skipped, so those are counted here.
fn line_of(record: &::csv::StringRecord, input: &str) -> usize {
    let Some(pos) = record.position() else {
        return 0;
    };
    let start = usize::try_from(pos.byte()).unwrap_or(usize::MAX);
    let skipped = input
        .get(start..)
        .unwrap_or("")
        .bytes()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .filter(|b| *b == b'\n')
        .count();
    usize::try_from(pos.line())
        .unwrap_or(usize::MAX)
        .saturating_add(skipped)
}

fn csv_error(e: &::csv::Error) -> RowError {
    let line = e
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    // Reading from a `&str` leaves only format errors, none of which quote field contents.
    RowError::new(line, None, format!("not readable as CSV: {e}"))
}

/// Where each known column is in the file.
struct Columns {
    index: HashMap<&'static str, usize>,
    width: usize,
}

impl Columns {
    fn from_header(header: &::csv::StringRecord, input: &str) -> Result<Columns, CsvErrors> {
        let line = line_of(header, input);
        let known = || {
            REQUIRED_COLUMNS
                .iter()
                .chain(OPTIONAL_COLUMNS.iter())
                .chain(IGNORED_COLUMNS.iter())
        };
        let mut errors = Vec::new();
        let mut index = HashMap::new();
        let mut unknown = Vec::new();
        for (i, name) in header.iter().enumerate() {
            let name = name.trim();
            if name.is_empty() {
                errors.push(RowError::new(
                    line,
                    None,
                    format!("header column {} has no name", i + 1),
                ));
                continue;
            }
            match known().find(|k| **k == name) {
                Some(k) => {
                    if index.insert(*k, i).is_some() {
                        errors.push(RowError::new(
                            line,
                            None,
                            format!("column {name:?} appears more than once"),
                        ));
                    }
                }
                None => match known().find(|k| k.eq_ignore_ascii_case(name)) {
                    Some(k) => unknown.push(format!("{name:?} (did you mean {k:?}?)")),
                    None => unknown.push(format!("{name:?}")),
                },
            }
        }
        if !unknown.is_empty() {
            let label = columns_word(unknown.len());
            errors.push(RowError::new(
                line,
                None,
                format!(
                    "unknown {label} {}; the columns are {}, {} (and the ignored legacy {})",
                    unknown.join(", "),
                    REQUIRED_COLUMNS.join(", "),
                    OPTIONAL_COLUMNS.join(", "),
                    IGNORED_COLUMNS.join(", "),
                ),
            ));
        }
        let missing: Vec<&str> = REQUIRED_COLUMNS
            .iter()
            .copied()
            .filter(|c| !index.contains_key(c))
            .collect();
        if !missing.is_empty() {
            let label = columns_word(missing.len());
            errors.push(RowError::new(
                line,
                None,
                format!("missing required {label}: {}", missing.join(", ")),
            ));
        }
        if errors.is_empty() {
            Ok(Columns {
                index,
                width: header.len(),
            })
        } else {
            Err(CsvErrors(errors))
        }
    }
}

fn columns_word(n: usize) -> &'static str {
    if n == 1 { "column" } else { "columns" }
}

/// One record's cells, by column name.
struct Cells<'a> {
    record: &'a ::csv::StringRecord,
    columns: &'a Columns,
}

impl Cells<'_> {
    /// The cell, trimmed; "" when the column is absent.
    fn get(&self, column: &str) -> &str {
        self.raw(column).trim()
    }

    /// The cell as written; "" when the column is absent.
    fn raw(&self, column: &str) -> &str {
        self.columns
            .index
            .get(column)
            .and_then(|&i| self.record.get(i))
            .unwrap_or("")
    }
}

// ---------------------------------------------------------------------------------------------
// Checking

/// A checked row.
struct Row {
    hostname: String,
    ip: Ipv4Addr,
    netmask: Ipv4Addr,
    gateway: Ipv4Addr,
    nameservers: Vec<String>,
    mac: String,
    disk: String,
    labels: BTreeMap<String, String>,
    vlan_id: Option<u16>,
    bmc: Option<Bmc>,
}

/// BMC details of a row. Deliberately not `Debug`: it holds the password.
struct Bmc {
    ip: IpAddr,
    username: String,
    password: String,
}

/// Values already used by earlier rows, with the line that used them.
#[derive(Default)]
struct Seen {
    hostnames: HashMap<String, usize>,
    ips: HashMap<Ipv4Addr, usize>,
    macs: HashMap<String, usize>,
    bmc_ips: HashMap<IpAddr, usize>,
}

/// Record `value` as used on `line`; a message naming the earlier line if it already was.
fn unique<K: std::hash::Hash + Eq + fmt::Display + Clone>(
    seen: &mut HashMap<K, usize>,
    value: K,
    line: usize,
) -> Result<K, String> {
    match seen.get(&value) {
        Some(&first) => Err(format!("\"{value}\" is already used on line {first}")),
        None => {
            seen.insert(value.clone(), line);
            Ok(value)
        }
    }
}

/// Where the problems of one row go, each with the row's line.
struct RowErrors<'a> {
    line: usize,
    errors: &'a mut Vec<RowError>,
}

impl RowErrors<'_> {
    /// The checked value, or its problem recorded against `column`.
    fn one<T>(&mut self, column: &str, checked: Result<T, String>) -> Option<T> {
        self.all(column, checked.map_err(|m| vec![m]))
    }

    /// The checked value, or its problems recorded against `column`.
    fn all<T>(&mut self, column: &str, checked: Result<T, Vec<String>>) -> Option<T> {
        checked
            .map_err(|messages| {
                for m in messages {
                    self.errors.push(RowError::new(self.line, Some(column), m));
                }
            })
            .ok()
    }
}

/// Check every cell of a row, pushing every problem; the row when there are none.
fn check_row(
    line: usize,
    cells: &Cells<'_>,
    seen: &mut Seen,
    errors: &mut Vec<RowError>,
) -> Option<Row> {
    let before = errors.len();
    let mut row = RowErrors { line, errors };

    let bmc_ip = cells.get("bmc_ip");
    let bmc_username = cells.get("bmc_username");
    // The password is taken as written (spaces may be part of it) and never quoted back.
    let bmc_password = cells.raw("bmc_password");
    let has_bmc = !bmc_ip.is_empty() || !bmc_username.is_empty() || !bmc_password.is_empty();

    let hostname = cells.get("hostname");
    row.one(
        "hostname",
        check_hostname(hostname, has_bmc)
            .and_then(|()| unique(&mut seen.hostnames, hostname.to_string(), line)),
    );
    let ip = row.one(
        "ip_address",
        ipv4(cells.get("ip_address")).and_then(|ip| unique(&mut seen.ips, ip, line)),
    );
    let netmask = row.one("netmask", netmask(cells.get("netmask")));
    let gateway = row.one("gateway", ipv4(cells.get("gateway")));
    let nameservers = row.all("nameservers", nameservers(cells.get("nameservers")));
    let mac = row.one(
        "mac",
        non_empty(cells.get("mac"))
            .and_then(|c| normalize_mac(c).ok_or_else(|| format!("{c:?} is not a MAC address")))
            .and_then(|mac| unique(&mut seen.macs, mac, line)),
    );
    let disk = cells.get("disk");
    row.one("disk", check_disk(disk));
    let labels = row.all("labels", labels(cells.get("labels")));
    let vlan_id = row.one("vlan_id", vlan_id(cells.get("vlan_id"))).flatten();

    // BMC: all or none of ip, username, password.
    let mut bmc = None;
    if has_bmc {
        let missing: Vec<&str> = [
            ("bmc_ip", bmc_ip.is_empty()),
            ("bmc_username", bmc_username.is_empty()),
            ("bmc_password", bmc_password.is_empty()),
        ]
        .into_iter()
        .filter_map(|(c, empty)| empty.then_some(c))
        .collect();
        if !missing.is_empty() {
            row.errors.push(RowError::new(
                line,
                None,
                format!(
                    "incomplete BMC details: {} {} empty; set all of bmc_ip, bmc_username and \
                     bmc_password, or none of them",
                    missing.join(", "),
                    if missing.len() == 1 { "is" } else { "are" }
                ),
            ));
        }
        if !bmc_ip.is_empty()
            && let Some(ip) = row.one(
                "bmc_ip",
                bmc_ip
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{bmc_ip:?} is not an IP address"))
                    .and_then(|ip| unique(&mut seen.bmc_ips, ip, line)),
            )
            && missing.is_empty()
        {
            bmc = Some(Bmc {
                ip,
                username: bmc_username.to_string(),
                password: bmc_password.to_string(),
            });
        }
    }

    if errors.len() > before {
        return None;
    }
    Some(Row {
        hostname: hostname.to_string(),
        ip: ip?,
        netmask: netmask?,
        gateway: gateway?,
        nameservers: nameservers?,
        mac: mac?,
        disk: disk.to_string(),
        labels: labels?,
        vlan_id,
        bmc,
    })
}

fn non_empty(cell: &str) -> Result<&str, String> {
    if cell.is_empty() {
        Err("is empty".into())
    } else {
        Ok(cell)
    }
}

fn check_hostname(hostname: &str, has_bmc: bool) -> Result<(), String> {
    if !is_dns1123_subdomain(non_empty(hostname)?) {
        Err(format!(
            "{hostname:?} is not a valid hostname: it must be a DNS-1123 subdomain (lower-case \
             letters, digits, '-' and '.', each dot-separated part starting and ending with a \
             letter or digit, at most {MAX_NAME_LEN} characters)"
        ))
    } else if has_bmc && bmc_secret_name(hostname).len() > MAX_NAME_LEN {
        Err(format!(
            "is too long for a row with BMC details: the Secret name \"bmc-<hostname>-auth\" \
             must be at most {MAX_NAME_LEN} characters"
        ))
    } else {
        Ok(())
    }
}

fn ipv4(cell: &str) -> Result<Ipv4Addr, String> {
    match non_empty(cell)?.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(format!(
            "{cell:?} is an IPv6 address; only IPv4 is supported here"
        )),
        Err(_) => Err(format!("{cell:?} is not an IPv4 address")),
    }
}

fn netmask(cell: &str) -> Result<Ipv4Addr, String> {
    non_empty(cell)?
        .parse::<Ipv4Addr>()
        .ok()
        .filter(|mask| {
            let bits = u32::from(*mask);
            let host = !bits;
            // Contiguous ones: the host part is 0…01…1, and at least one network bit is set.
            bits != 0 && host & host.wrapping_add(1) == 0
        })
        .ok_or_else(|| {
            format!(
                "{cell:?} is not a netmask: it must be an IPv4 netmask with contiguous ones, e.g. \
                 255.255.255.0"
            )
        })
}

fn check_disk(disk: &str) -> Result<(), String> {
    if is_device_path(non_empty(disk)?) {
        Ok(())
    } else {
        Err(format!(
            "{disk:?} is not a device path: it must match ^(/dev/[\\w-]+)+$, e.g. /dev/sda or \
             /dev/nvme0n1"
        ))
    }
}

fn vlan_id(cell: &str) -> Result<Option<u16>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    match cell.parse::<u16>() {
        Ok(v) if (1..=4094).contains(&v) && cell.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(v)),
        _ => Err(format!(
            "{cell:?} is not a VLAN ID (an integer from 1 to 4094)"
        )),
    }
}

/// `problems`, or `value` when there are none.
fn none_or<T>(value: T, problems: Vec<String>) -> Result<T, Vec<String>> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

fn nameservers(cell: &str) -> Result<Vec<String>, Vec<String>> {
    non_empty(cell).map_err(|m| vec![m])?;
    let mut servers = Vec::new();
    let mut problems = Vec::new();
    for entry in cell.split('|').map(str::trim) {
        if entry.is_empty() {
            problems.push(format!(
                "{cell:?} contains an empty entry (separate servers with '|')"
            ));
        } else if let Ok(ip) = entry.parse::<IpAddr>() {
            servers.push(ip.to_string());
        } else {
            problems.push(format!("{entry:?} is not an IP address"));
        }
    }
    none_or(servers, problems)
}

fn labels(cell: &str) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut labels = BTreeMap::new();
    if cell.is_empty() {
        return Ok(labels);
    }
    let mut problems = Vec::new();
    for pair in cell.split('|') {
        let pair = pair.trim();
        let parts: Vec<&str> = pair.split('=').collect();
        let [key, value] = parts.as_slice() else {
            problems.push(format!(
                "{pair:?} is not a key=value pair (separate labels with '|')"
            ));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if let Err(why) = check_label_key(key) {
            problems.push(format!("{key:?} is not a valid label key: {why}"));
        }
        if let Err(why) = check_label_value(value) {
            problems.push(format!("{value:?} is not a valid label value: {why}"));
        }
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            problems.push(format!("label key {key:?} is given more than once"));
        }
    }
    none_or(labels, problems)
}

/// The name part of a label key, or a label value: at most 63 characters of letters, digits,
/// '-', '_' and '.', starting and ending with a letter or digit.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Kubernetes' qualified name rule for label keys: `[prefix/]name`.
fn check_label_key(key: &str) -> Result<(), &'static str> {
    const NAME_RULE: &str = "the name part must be 1 to 63 letters, digits, '-', '_' or '.', \
                             starting and ending with a letter or digit";
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        return Err("the prefix before '/' must be a DNS-1123 subdomain (e.g. example.com)");
    }
    if !is_label_name(name) {
        return Err(NAME_RULE);
    }
    Ok(())
}

/// Kubernetes' label value rule: empty, or a valid label name.
fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(
            "a label value must be empty or 1 to 63 letters, digits, '-', '_' or '.', starting \
             and ending with a letter or digit",
        )
    }
}

/// EKS Anywhere's disk rule, `^(/dev/[\w-]+)+$` (`\w` is ASCII letters, digits and '_').
fn is_device_path(s: &str) -> bool {
    let mut rest = s;
    loop {
        let Some(after) = rest.strip_prefix("/dev/") else {
            return false;
        };
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        if end == 0 {
            return false;
        }
        rest = &after[end..];
        if rest.is_empty() {
            return true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generating

fn bmc_machine_name(hostname: &str) -> String {
    format!("bmc-{hostname}")
}

fn bmc_secret_name(hostname: &str) -> String {
    format!("bmc-{hostname}-auth")
}

fn meta(name: String, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

fn hardware_object(row: &Row, namespace: &str) -> Hardware {
    let address = row.ip.to_string();
    let netmask = row.netmask.to_string();
    let gateway = row.gateway.to_string();
    let spec = HardwareSpec {
        bmc_ref: row.bmc.as_ref().map(|_| TypedLocalObjectRef {
            api_group: None,
            kind: Some("Machine".into()),
            name: Some(bmc_machine_name(&row.hostname)),
        }),
        disks: Some(vec![Disk {
            device: Some(row.disk.clone()),
        }]),
        metadata: Some(HardwareMetadata {
            facility: Some(MetadataFacility {
                facility_code: Some(FACILITY_CODE.into()),
                plan_slug: Some(PLAN_SLUG.into()),
                ..MetadataFacility::default()
            }),
            instance: Some(MetadataInstance {
                id: Some(row.mac.clone()),
                hostname: Some(row.hostname.clone()),
                ips: Some(vec![MetadataInstanceIp {
                    address: Some(address.clone()),
                    netmask: Some(netmask.clone()),
                    gateway: Some(gateway.clone()),
                    family: Some(4),
                    public: Some(true),
                    ..MetadataInstanceIp::default()
                }]),
                operating_system: Some(MetadataInstanceOperatingSystem::default()),
                allow_pxe: Some(true),
                always_pxe: Some(true),
                ..MetadataInstance::default()
            }),
            ..HardwareMetadata::default()
        }),
        interfaces: Some(vec![Interface {
            netboot: Some(Netboot {
                allow_pxe: Some(true),
                allow_workflow: Some(true),
                ..Netboot::default()
            }),
            dhcp: Some(Dhcp {
                arch: Some(ARCH.into()),
                mac: Some(row.mac.clone()),
                ip: Some(Ip {
                    address: Some(address),
                    netmask: Some(netmask),
                    gateway: Some(gateway),
                    family: Some(4),
                }),
                lease_time: Some(LEASE_TIME),
                hostname: Some(row.hostname.clone()),
                name_servers: Some(row.nameservers.clone()),
                uefi: Some(true),
                vlan_id: row.vlan_id.map(|v| v.to_string()),
                ..Dhcp::default()
            }),
            ..Interface::default()
        }]),
        ..HardwareSpec::default()
    };
    let mut hw = Hardware::new(&row.hostname, spec);
    hw.metadata = meta(row.hostname.clone(), namespace, row.labels.clone());
    hw
}

fn bmc_machine(row: &Row, bmc: &Bmc, namespace: &str) -> Machine {
    let name = bmc_machine_name(&row.hostname);
    let spec = MachineSpec {
        connection: Some(Connection {
            host: Some(bmc.ip.to_string()),
            auth_secret_ref: Some(SecretReference {
                name: Some(bmc_secret_name(&row.hostname)),
                namespace: Some(namespace.to_string()),
            }),
            // The Go field has no `omitempty`, so EKS Anywhere always writes `port: 0`: the
            // provider's default port.
            port: Some(0),
            insecure_tls: Some(true),
            provider_options: Some(ProviderOptions {
                preferred_order: Some(vec![provider_name::GOFISH.to_string()]),
                ..ProviderOptions::default()
            }),
        }),
    };
    let mut machine = Machine::new(&name, spec);
    machine.metadata = meta(name, namespace, BTreeMap::new());
    machine
}

fn bmc_secret(row: &Row, bmc: &Bmc, namespace: &str) -> Secret {
    let labels = BTreeMap::from([(CLUSTERCTL_MOVE_LABEL.to_string(), "true".to_string())]);
    Secret {
        metadata: meta(bmc_secret_name(&row.hostname), namespace, labels),
        type_: Some(BASIC_AUTH_SECRET_TYPE.into()),
        data: Some(BTreeMap::from([
            (
                "username".to_string(),
                ByteString(bmc.username.clone().into_bytes()),
            ),
            (
                "password".to_string(),
                ByteString(bmc.password.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths() {
        for ok in [
            "/dev/sda",
            "/dev/nvme0n1",
            "/dev/sda/dev/sdb",
            "/dev/md_0",
            "/dev/a-b",
        ] {
            assert!(is_device_path(ok), "{ok}");
        }
        for bad in [
            "sda",
            "/dev/",
            "/dev/disk/by-id/x",
            "/dev/sda ",
            "dev/sda",
            "/dev/sd.a",
            "",
        ] {
            assert!(!is_device_path(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["type", "example.com/type", "a_b.c-d", "A1"] {
            assert!(check_label_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/type",
            "Example.com/type",
            "a/b/c",
            "-a",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "cp", "Worker_1.x"] {
            assert!(check_label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-cp", "a b", "x/y", &"v".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn netmasks() {
        for ok in [
            "255.255.255.0",
            "255.255.254.0",
            "255.255.255.255",
            "128.0.0.0",
        ] {
            assert!(netmask(ok).is_ok(), "{ok}");
        }
        for bad in [
            "255.0.255.0",
            "0.0.0.0",
            "255.255.255.1",
            "24",
            "255.255.255",
            "::",
        ] {
            assert!(netmask(bad).is_err(), "{bad}");
        }
    }
}
