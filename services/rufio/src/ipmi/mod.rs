//! IPMI v2.0 RMCP+ ("lanplus") client over UDP.
//!
//! A session is opened with Get Channel Authentication Capabilities, Open Session and RAKP
//! 1-4, then raised to the configured privilege. Inside it every message is authenticated
//! (HMAC-SHA1-96 or HMAC-SHA256-128 keyed with K1) and encrypted (AES-CBC-128 keyed with
//! K2). Requests are retransmitted with a fresh session sequence number until the per-try
//! timeout has run out `retries + 1` times.
//!
//! Sessions are always closed: [`Session::close`] sends Close Session and waits for the
//! answer; a [`Session`] dropped without it (an error path, a cancelled future) sends Close
//! Session without waiting, so the BMC's session table does not fill up.
//!
//! Only cipher suites 3 and 17 are used unless weaker ones (1, 2, 15, 16: no
//! confidentiality or no integrity) are explicitly allowed; MD5 suites are not implemented.
//! With no suite configured, 3 is tried and then 17, as bmclib does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::net::UdpSocket;

use crate::{Bmc, BmcError, BootDevice, PowerAction, PowerState, Secret};

pub mod packet;

use packet::{CipherSuite, Packet, Rakp, SessionCrypto, SessionKeys};

/// The IPMI-over-LAN port.
pub const DEFAULT_PORT: u16 = 623;

/// Network functions.
mod netfn {
    pub const CHASSIS: u8 = 0x00;
    pub const APP: u8 = 0x06;
}

/// Session privilege levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// User (read-only: power status, device id).
    User = 2,
    /// Operator (chassis control, boot options).
    Operator = 3,
    /// Administrator (bmclib's `ipmitool -L ADMINISTRATOR` default).
    Administrator = 4,
}

/// Configuration of one IPMI BMC.
#[derive(Debug, Clone)]
pub struct IpmiConfig {
    /// Host name or address.
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// User name (at most 16 bytes).
    pub username: String,
    /// Password (at most 20 bytes).
    pub password: Secret,
    /// BMC key Kg, when the BMC has one set (two-key login); empty otherwise.
    pub kg: Secret,
    /// Cipher suite; `None` tries 3, then 17.
    pub cipher_suite: Option<u8>,
    /// Allow suites without integrity or confidentiality (1, 2, 15, 16).
    pub allow_weak_cipher_suites: bool,
    /// Privilege to request.
    pub privilege: Privilege,
    /// How long to wait for an answer before retransmitting.
    pub timeout: Duration,
    /// Retransmissions after the first try.
    pub retries: u32,
}

impl IpmiConfig {
    /// Defaults: port 623, suites 3 then 17, Administrator, 1 s per try, 2 retries.
    pub fn new(host: &str, username: &str, password: Secret) -> IpmiConfig {
        IpmiConfig {
            host: host.to_string(),
            port: DEFAULT_PORT,
            username: username.to_string(),
            password,
            kg: Secret::default(),
            cipher_suite: None,
            allow_weak_cipher_suites: false,
            privilege: Privilege::Administrator,
            timeout: Duration::from_secs(1),
            retries: 2,
        }
    }

    /// Check the configuration without touching the network.
    pub fn validate(&self) -> Result<(), BmcError> {
        if self.host.is_empty() {
            return Err(BmcError::Config("host is empty".into()));
        }
        if self.username.len() > 16 {
            return Err(BmcError::Config(
                "IPMI user names are at most 16 bytes".into(),
            ));
        }
        if self.password.expose().len() > 20 {
            return Err(BmcError::Config(
                "IPMI passwords are at most 20 bytes".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(BmcError::Config("timeout is zero".into()));
        }
        if let Some(id) = self.cipher_suite {
            let suite = CipherSuite::by_id(id).ok_or_else(|| BmcError::Unsupported {
                host: self.host.clone(),
                detail: format!(
                    "cipher suite {id} is not implemented (use 3 or 17; 1, 2, 15 and 16 when weak suites are allowed)"
                ),
            })?;
            if !suite.is_strong() && !self.allow_weak_cipher_suites {
                return Err(BmcError::Unsupported {
                    host: self.host.clone(),
                    detail: format!(
                        "cipher suite {id} lacks integrity or confidentiality and weak suites are not allowed"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// What Get Device ID returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId {
    /// Device ID.
    pub device_id: u8,
    /// Device revision (low 4 bits).
    pub device_revision: u8,
    /// Firmware major revision.
    pub firmware_major: u8,
    /// Firmware minor revision (BCD).
    pub firmware_minor: u8,
    /// IPMI version, e.g. 0x02 for 2.0.
    pub ipmi_version: u8,
    /// IANA manufacturer ID.
    pub manufacturer_id: u32,
    /// Product ID.
    pub product_id: u16,
}

/// Boot flags (System Boot Options parameter 5) as read back from the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFlags {
    /// The flags are valid.
    pub valid: bool,
    /// Applies to every boot, not just the next.
    pub persistent: bool,
    /// EFI boot instead of legacy.
    pub efi: bool,
    /// The boot device selector (bits 5:2 of data byte 2); see [`boot_selector`].
    pub selector: u8,
}

/// The boot device selector of System Boot Options parameter 5 for a device.
pub fn boot_selector(dev: BootDevice) -> u8 {
    match dev {
        BootDevice::Pxe => 0x1,
        BootDevice::Disk => 0x2,
        BootDevice::Safe => 0x3,
        BootDevice::Cdrom => 0x5,
        BootDevice::Bios => 0x6,
    }
}

/// Encode the five data bytes of System Boot Options parameter 5.
pub fn boot_flags_data(dev: BootDevice, persistent: bool, efi: bool) -> [u8; 5] {
    let mut b0 = 0x80;
    if persistent {
        b0 |= 0x40;
    }
    if efi {
        b0 |= 0x20;
    }
    [b0, boot_selector(dev) << 2, 0, 0, 0]
}

/// The chassis control code for a power action.
pub fn chassis_control_code(action: PowerAction) -> u8 {
    match action {
        PowerAction::Off => 0x00,
        PowerAction::On => 0x01,
        PowerAction::Cycle => 0x02,
        PowerAction::Reset => 0x03,
        PowerAction::Soft => 0x05,
    }
}

/// A UDP socket connected to one BMC, with retransmission.
#[derive(Debug)]
struct Transport {
    socket: UdpSocket,
    host: String,
    timeout: Duration,
    retries: u32,
}

impl Transport {
    async fn connect(cfg: &IpmiConfig) -> Result<Transport, BmcError> {
        let unreachable = |e: std::io::Error| BmcError::Unreachable {
            host: cfg.host.clone(),
            source: Box::new(e),
        };
        let addr: SocketAddr = tokio::net::lookup_host((cfg.host.as_str(), cfg.port))
            .await
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| {
                unreachable(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the name has no addresses",
                ))
            })?;
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let socket = UdpSocket::bind(bind).await.map_err(unreachable)?;
        socket.connect(addr).await.map_err(unreachable)?;
        Ok(Transport {
            socket,
            host: cfg.host.clone(),
            timeout: cfg.timeout,
            retries: cfg.retries,
        })
    }

    /// Send `make()` and wait for a datagram that `accept` takes; retransmit a fresh
    /// `make()` after each timeout.
    async fn exchange<T>(
        &self,
        mut make: impl FnMut() -> Vec<u8>,
        mut accept: impl FnMut(&[u8]) -> Option<Result<T, BmcError>>,
    ) -> Result<T, BmcError> {
        let mut buf = vec![0u8; 1024];
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tracing::debug!(host = %self.host, attempt, "IPMI retransmission");
            }
            let pkt = make();
            if let Err(e) = self.socket.send(&pkt).await {
                return Err(self.io_error(e));
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.io_error(e)),
                    Ok(Ok(n)) => {
                        if let Some(r) = accept(&buf[..n]) {
                            return r;
                        }
                    }
                }
            }
        }
        Err(BmcError::TimedOut {
            host: self.host.clone(),
            timeout: self.timeout * (self.retries + 1),
        })
    }

    /// A session set-up step: send the `out` message `msg`, and take the reply (the payload
    /// type after `out`) carrying `tag`, parsed by `parse` (whose refusal is a protocol error).
    async fn handshake<T>(
        &self,
        out: u8,
        msg: &[u8],
        tag: u8,
        parse: fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, BmcError> {
        self.exchange(
            || packet::encode_presession(out, msg),
            |p| match packet::decode(p, None) {
                // The tag is each reply's first byte.
                Ok(Packet::V20 {
                    payload_type,
                    payload,
                    ..
                }) if payload_type == out + 1 => match parse(&payload) {
                    Ok(_) if payload[0] != tag => None,
                    r => Some(r.map_err(|e| self.protocol(e))),
                },
                _ => None,
            },
        )
        .await
    }

    fn io_error(&self, e: std::io::Error) -> BmcError {
        BmcError::Unreachable {
            host: self.host.clone(),
            source: Box::new(e),
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> BmcError {
        BmcError::Protocol {
            host: self.host.clone(),
            detail: detail.into(),
        }
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS random source works");
    u32::from_le_bytes(b)
}

fn completion_error(host: &str, what: &str, cc: u8) -> BmcError {
    let detail = format!(
        "completion code {cc:#04x} ({})",
        packet::completion_text(cc)
    );
    match cc {
        0xd4 => BmcError::AuthenticationRefused {
            host: host.to_string(),
            detail: format!("{what}: {detail}"),
        },
        0xc1 | 0x80 => BmcError::Unsupported {
            host: host.to_string(),
            detail: format!("{what}: {detail}"),
        },
        _ => BmcError::Failed {
            host: host.to_string(),
            operation: what.to_string(),
            detail,
        },
    }
}

/// An IPMI client for one BMC. Each [`Bmc`] call opens and closes its own session.
#[derive(Debug, Clone)]
pub struct IpmiClient {
    cfg: IpmiConfig,
}

impl IpmiClient {
    /// A client; checks the configuration.
    pub fn new(cfg: IpmiConfig) -> Result<IpmiClient, BmcError> {
        cfg.validate()?;
        Ok(IpmiClient { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &IpmiConfig {
        &self.cfg
    }

    /// Open a session: the configured cipher suite, or 3 and then 17.
    pub async fn open(&self) -> Result<Session, BmcError> {
        let suites: Vec<u8> = match self.cfg.cipher_suite {
            Some(s) => vec![s],
            None => vec![3, 17],
        };
        let mut last = None;
        for (i, id) in suites.iter().enumerate() {
            let suite = CipherSuite::by_id(*id).expect("validated");
            match self.open_with(suite).await {
                Err(e) if e.kind() == crate::ErrorKind::Unsupported && i + 1 < suites.len() => {
                    tracing::debug!(host = %self.cfg.host, suite = id, error = %e, "cipher suite refused, trying the next");
                    last = Some(e);
                }
                r => return r,
            }
        }
        Err(last.expect("at least one suite was tried"))
    }

    async fn open_with(&self, suite: CipherSuite) -> Result<Session, BmcError> {
        let cfg = &self.cfg;
        let host = cfg.host.as_str();
        let t = Transport::connect(cfg).await?;
        let privilege = cfg.privilege as u8;

        // Get Channel Authentication Capabilities (IPMI v1.5 framing, asks for v2.0 data).
        let msg = packet::encode_request(netfn::APP, 0x38, 0, &[0x8e, privilege]);
        let caps = t
            .exchange(
                || packet::encode_v15(&msg),
                |p| match packet::decode(p, None) {
                    Ok(Packet::V15 { message, .. }) => match packet::decode_response(&message) {
                        Ok(r) if r.cmd == 0x38 => Some(Ok(r)),
                        _ => None,
                    },
                    _ => None,
                },
            )
            .await?;
        if caps.completion != 0 {
            return Err(completion_error(
                host,
                "Get Channel Authentication Capabilities",
                caps.completion,
            ));
        }
        if caps.data.len() < 4 || caps.data[1] & 0x80 == 0 || caps.data[3] & 0x02 == 0 {
            return Err(BmcError::Unsupported {
                host: host.to_string(),
                detail: "the BMC does not offer IPMI v2.0 (RMCP+)".into(),
            });
        }

        // Open Session.
        let console_sid = random_u32() | 1;
        let tag = (console_sid >> 8) as u8;
        let req = packet::open_session_request(tag, privilege, console_sid, suite);
        let open = t
            .handshake(
                packet::payload::OPEN_SESSION_REQUEST,
                &req,
                tag,
                packet::parse_open_session_response,
            )
            .await?;
        if open.status != 0 {
            let detail = format!(
                "cipher suite {}: {}",
                suite.id,
                packet::rmcp_status_text(open.status)
            );
            return Err(match open.status {
                0x03..=0x07 | 0x10 | 0x11 => BmcError::Unsupported {
                    host: host.to_string(),
                    detail,
                },
                0x09 | 0x0a => BmcError::AuthenticationRefused {
                    host: host.to_string(),
                    detail,
                },
                _ => BmcError::Failed {
                    host: host.to_string(),
                    operation: "Open Session".into(),
                    detail,
                },
            });
        }
        let mut want = packet::open_session_request(0, 0, 0, suite);
        want.truncate(32);
        if open.console_sid != console_sid
            || open.algorithms != [want[12], want[20], want[28]]
            || open.bmc_sid == 0
        {
            return Err(t.protocol("Open Session Response does not match the request"));
        }

        // RAKP 1 and 2.
        let mut rakp = Rakp {
            alg: suite.auth,
            kuid: cfg.password.expose().as_bytes().to_vec(),
            kg: cfg.kg.expose().as_bytes().to_vec(),
            console_sid,
            bmc_sid: open.bmc_sid,
            console_rand: [0; 16],
            bmc_rand: [0; 16],
            bmc_guid: [0; 16],
            role: privilege | 0x10,
            username: cfg.username.as_bytes().to_vec(),
        };
        getrandom::fill(&mut rakp.console_rand).expect("the OS random source works");
        let tag = tag.wrapping_add(1);
        let m1 = packet::rakp1(tag, &rakp);
        let r2 = t
            .handshake(packet::payload::RAKP1, &m1, tag, packet::parse_rakp2)
            .await?;
        if r2.status != 0 {
            let detail = packet::rmcp_status_text(r2.status).to_string();
            return Err(match r2.status {
                0x09 | 0x0a | 0x0c | 0x0d | 0x0e => BmcError::AuthenticationRefused {
                    host: host.to_string(),
                    detail,
                },
                _ => BmcError::Failed {
                    host: host.to_string(),
                    operation: "RAKP 2".into(),
                    detail,
                },
            });
        }
        if r2.console_sid != console_sid {
            return Err(t.protocol("RAKP 2 is for another session"));
        }
        rakp.bmc_rand = r2.bmc_rand;
        rakp.bmc_guid = r2.bmc_guid;
        let tag = tag.wrapping_add(1);
        if !packet::ct_eq(&rakp.rakp2_auth_code(), &r2.auth_code) {
            // Tell the BMC, so it frees the half-open session; no answer is expected.
            let m3 = packet::rakp3(tag, 0x0f, rakp.bmc_sid, &[]);
            let _ = t
                .socket
                .try_send(&packet::encode_presession(packet::payload::RAKP3, &m3));
            return Err(BmcError::AuthenticationRefused {
                host: host.to_string(),
                detail: "the password does not match (RAKP 2 key exchange code differs)".into(),
            });
        }

        // RAKP 3 and 4.
        let m3 = packet::rakp3(tag, 0, rakp.bmc_sid, &rakp.rakp3_auth_code());
        let r4 = t
            .handshake(packet::payload::RAKP3, &m3, tag, packet::parse_rakp4)
            .await?;
        if r4.status != 0 {
            let detail = packet::rmcp_status_text(r4.status).to_string();
            return Err(match r4.status {
                0x09 | 0x0a | 0x0d | 0x0e | 0x0f => BmcError::AuthenticationRefused {
                    host: host.to_string(),
                    detail,
                },
                _ => BmcError::Failed {
                    host: host.to_string(),
                    operation: "RAKP 4".into(),
                    detail,
                },
            });
        }
        let sik = rakp.sik();
        if r4.console_sid != console_sid || !packet::ct_eq(&rakp.rakp4_icv(&sik), &r4.icv) {
            return Err(t.protocol("RAKP 4 integrity check value does not match"));
        }
        let mut session = Session {
            t,
            crypto: SessionCrypto {
                suite,
                keys: SessionKeys::derive(suite.auth, &sik),
            },
            console_sid,
            bmc_sid: rakp.bmc_sid,
            seq: 1,
            rq_seq: 1,
            closed: false,
        };
        tracing::debug!(host, suite = suite.id, "IPMI session established");

        // Raise the session to the requested privilege (RMCP+ sessions start at User).
        if cfg.privilege != Privilege::User {
            let r = session.command(netfn::APP, 0x3b, &[privilege]).await?;
            if r.completion != 0 {
                let e = completion_error(host, "Set Session Privilege Level", r.completion);
                session.close().await;
                return Err(match e {
                    BmcError::Failed { detail, .. } => BmcError::AuthenticationRefused {
                        host: host.to_string(),
                        detail: format!("privilege {:?} refused: {detail}", cfg.privilege),
                    },
                    e => e,
                });
            }
        }
        Ok(session)
    }

    /// `f` on a fresh session, closed afterwards.
    async fn with_session<T>(
        &self,
        f: impl AsyncFnOnce(&mut Session) -> Result<T, BmcError>,
    ) -> Result<T, BmcError> {
        let mut s = self.open().await?;
        let r = f(&mut s).await;
        s.close().await;
        r
    }

    /// Get Device ID.
    pub async fn device_id(&self) -> Result<DeviceId, BmcError> {
        self.with_session(async |s| s.device_id().await).await
    }

    /// Read back the boot flags (System Boot Options parameter 5).
    pub async fn boot_flags(&self) -> Result<BootFlags, BmcError> {
        self.with_session(async |s| s.boot_flags().await).await
    }
}

#[async_trait]
impl Bmc for IpmiClient {
    async fn power_state(&self) -> Result<PowerState, BmcError> {
        self.with_session(async |s| s.power_state().await).await
    }

    async fn power(&self, action: PowerAction) -> Result<(), BmcError> {
        self.with_session(async |s| s.chassis_control(action).await)
            .await
    }

    async fn boot_device(
        &self,
        device: BootDevice,
        persistent: bool,
        efi: bool,
    ) -> Result<(), BmcError> {
        self.with_session(async |s| s.set_boot_device(device, persistent, efi).await)
            .await
    }
}

/// An established RMCP+ session. Close it with [`Session::close`]; dropping it sends
/// Close Session without waiting for the answer.
#[derive(Debug)]
pub struct Session {
    t: Transport,
    crypto: SessionCrypto,
    console_sid: u32,
    bmc_sid: u32,
    seq: u32,
    rq_seq: u8,
    closed: bool,
}

impl Session {
    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> u8 {
        self.crypto.suite.id
    }

    /// Send one IPMI request and return the response (whatever its completion code).
    pub async fn command(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<packet::Response, BmcError> {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let rq_seq = self.rq_seq;
        let msg = packet::encode_request(netfn, cmd, rq_seq, data);
        let Session {
            t,
            crypto,
            console_sid,
            bmc_sid,
            seq,
            ..
        } = self;
        t.exchange(
            || {
                let p = packet::encode_session(crypto, *bmc_sid, *seq, &msg, None);
                *seq = seq.wrapping_add(1).max(1);
                p
            },
            |p| match packet::decode(p, Some(crypto)) {
                Ok(Packet::V20 {
                    payload_type: packet::payload::IPMI,
                    session_id,
                    payload,
                    ..
                }) if session_id == *console_sid => match packet::decode_response(&payload) {
                    Ok(r) if r.rq_seq == rq_seq && r.cmd == cmd && r.netfn == netfn + 1 => {
                        Some(Ok(r))
                    }
                    _ => None,
                },
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(host = %t.host, error = %e, "dropping an IPMI packet");
                    None
                }
            },
        )
        .await
    }

    async fn checked(
        &mut self,
        what: &str,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<Vec<u8>, BmcError> {
        let r = self.command(netfn, cmd, data).await?;
        if r.completion != 0 {
            return Err(completion_error(&self.t.host, what, r.completion));
        }
        Ok(r.data)
    }

    /// Get Device ID.
    pub async fn device_id(&mut self) -> Result<DeviceId, BmcError> {
        let d = self.checked("Get Device ID", netfn::APP, 0x01, &[]).await?;
        if d.len() < 11 {
            return Err(self.t.protocol("Get Device ID response is truncated"));
        }
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0f,
            firmware_major: d[2] & 0x7f,
            firmware_minor: d[3],
            ipmi_version: d[4],
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8] & 0x0f, 0]),
            product_id: u16::from_le_bytes([d[9], d[10]]),
        })
    }

    /// Get Chassis Status: the power state.
    pub async fn power_state(&mut self) -> Result<PowerState, BmcError> {
        let d = self
            .checked("Get Chassis Status", netfn::CHASSIS, 0x01, &[])
            .await?;
        let b = d
            .first()
            .ok_or_else(|| self.t.protocol("Get Chassis Status response is empty"))?;
        Ok(if b & 1 == 1 {
            PowerState::On
        } else {
            PowerState::Off
        })
    }

    /// Chassis Control.
    pub async fn chassis_control(&mut self, action: PowerAction) -> Result<(), BmcError> {
        let what = format!("Chassis Control ({})", action.as_str());
        self.checked(&what, netfn::CHASSIS, 0x02, &[chassis_control_code(action)])
            .await
            .map(|_| ())
    }

    /// Set System Boot Options: the boot flags, framed by set-in-progress and the boot info
    /// acknowledge as `ipmitool chassis bootdev` does.
    pub async fn set_boot_device(
        &mut self,
        dev: BootDevice,
        persistent: bool,
        efi: bool,
    ) -> Result<(), BmcError> {
        // Set in progress; optional in the spec, so a refusal is not an error.
        let in_progress = self.command(netfn::CHASSIS, 0x08, &[0x00, 0x01]).await?;
        let use_progress = in_progress.completion == 0;
        // Boot info acknowledge (BIOS/POST); also optional.
        let _ = self
            .command(netfn::CHASSIS, 0x08, &[0x04, 0x01, 0x01])
            .await?;
        let mut data = vec![0x05];
        data.extend_from_slice(&boot_flags_data(dev, persistent, efi));
        let r = self
            .checked("Set System Boot Options", netfn::CHASSIS, 0x08, &data)
            .await;
        if use_progress {
            let _ = self.command(netfn::CHASSIS, 0x08, &[0x00, 0x00]).await;
        }
        r.map(|_| ())
    }

    /// Get System Boot Options parameter 5.
    pub async fn boot_flags(&mut self) -> Result<BootFlags, BmcError> {
        let d = self
            .checked(
                "Get System Boot Options",
                netfn::CHASSIS,
                0x09,
                &[0x05, 0, 0],
            )
            .await?;
        if d.len() < 7 {
            return Err(self.t.protocol("boot flags response is truncated"));
        }
        Ok(BootFlags {
            valid: d[2] & 0x80 != 0,
            persistent: d[2] & 0x40 != 0,
            efi: d[2] & 0x20 != 0,
            selector: (d[3] >> 2) & 0x0f,
        })
    }

    /// Get Session Info for the active sessions: (session slots, active sessions) on this
    /// channel, this session included.
    pub async fn session_counts(&mut self) -> Result<(u8, u8), BmcError> {
        let d = self
            .checked("Get Session Info", netfn::APP, 0x3d, &[0x00])
            .await?;
        if d.len() < 3 {
            return Err(self.t.protocol("Get Session Info response is truncated"));
        }
        Ok((d[1] & 0x3f, d[2] & 0x3f))
    }

    fn close_packet(&mut self) -> Vec<u8> {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let msg =
            packet::encode_request(netfn::APP, 0x3c, self.rq_seq, &self.bmc_sid.to_le_bytes());
        let p = packet::encode_session(&self.crypto, self.bmc_sid, self.seq, &msg, None);
        self.seq = self.seq.wrapping_add(1).max(1);
        p
    }

    /// Close the session and wait for the BMC to confirm. Failures are logged, not
    /// returned: the caller's result matters more, and the BMC times idle sessions out.
    pub async fn close(mut self) {
        self.closed = true;
        let sid = self.bmc_sid.to_le_bytes();
        match self.command(netfn::APP, 0x3c, &sid).await {
            Ok(r) if r.completion == 0 => {
                tracing::debug!(host = %self.t.host, "IPMI session closed");
            }
            Ok(r) => tracing::warn!(
                host = %self.t.host,
                completion = r.completion,
                "Close Session refused"
            ),
            Err(e) => tracing::warn!(host = %self.t.host, error = %e, "Close Session failed"),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed {
            let p = self.close_packet();
            let _ = self.t.socket.try_send(&p);
            tracing::debug!(host = %self.t.host, "IPMI session dropped; Close Session sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flags_encoding() {
        // IPMI v2.0 table 28-14, parameter 5: byte 1 bit 7 valid, bit 6 persistent, bit 5
        // EFI; byte 2 bits 5:2 the device selector.
        let table = [
            (BootDevice::Pxe, false, false, [0x80, 0x04, 0, 0, 0]),
            (BootDevice::Pxe, true, true, [0xe0, 0x04, 0, 0, 0]),
            (BootDevice::Disk, true, false, [0xc0, 0x08, 0, 0, 0]),
            (BootDevice::Safe, false, false, [0x80, 0x0c, 0, 0, 0]),
            (BootDevice::Cdrom, false, true, [0xa0, 0x14, 0, 0, 0]),
            (BootDevice::Bios, false, false, [0x80, 0x18, 0, 0, 0]),
        ];
        for (dev, persistent, efi, want) in table {
            assert_eq!(boot_flags_data(dev, persistent, efi), want, "{dev:?}");
        }
    }

    #[test]
    fn chassis_control_codes() {
        let table = [
            (PowerAction::Off, 0),
            (PowerAction::On, 1),
            (PowerAction::Cycle, 2),
            (PowerAction::Reset, 3),
            (PowerAction::Soft, 5),
        ];
        for (a, code) in table {
            assert_eq!(chassis_control_code(a), code, "{a:?}");
        }
    }

    #[test]
    fn config_validation() {
        let mut c = IpmiConfig::new("h", "admin", "pw".into());
        c.validate().unwrap();
        c.password = "x".repeat(21).into();
        assert!(c.validate().is_err());
        c.password = "pw".into();
        c.username = "u".repeat(17);
        assert!(c.validate().is_err());
        c.username = "admin".into();
        c.cipher_suite = Some(1);
        assert_eq!(
            c.validate().unwrap_err().kind(),
            crate::ErrorKind::Unsupported
        );
        c.allow_weak_cipher_suites = true;
        c.validate().unwrap();
    }
}
