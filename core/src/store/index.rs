//! Secondary indexes over Hardware (MAC, IP, agent ID, instance ID) and Workflows (agent ID).
//!
//! Both the embedded store and the Kubernetes backend keep every Hardware in memory and answer
//! [`super::HardwareLookup`] from these maps: a lookup is one hash probe and an `Arc` clone, which
//! is what lets boots answer a DHCP packet without touching disk or the network. The same claim
//! extraction is used to refuse a write that would let two Hardware claim one identity.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::{Kind, Object, StoreError};
use crate::model::{Hardware, Workflow};

/// Which identity a Hardware claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimKind {
    /// `interfaces[].dhcp.mac`.
    Mac,
    /// `interfaces[].dhcp.ip.address`.
    Ip,
    /// `spec.agentID`, compared trimmed and lower-cased (as worker tokens compare it).
    AgentId,
    /// `spec.metadata.instance.id`.
    InstanceId,
}

impl ClaimKind {
    /// The store API's lookup query parameter for this identity.
    pub fn param(self) -> &'static str {
        match self {
            ClaimKind::Mac => "mac",
            ClaimKind::Ip => "ip",
            ClaimKind::AgentId => "agentID",
            ClaimKind::InstanceId => "instanceID",
        }
    }
}

/// One identity claimed by a Hardware, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What kind of identity.
    pub kind: ClaimKind,
    /// Normalised value (lower-case MAC, canonical IP).
    pub value: String,
    /// JSON path of the field, e.g. `spec.interfaces[1].dhcp.mac`.
    pub field: String,
}

/// A claim whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadClaim {
    /// JSON path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// An agent ID as claims compare it: trimmed and lower-cased, as a worker token binds it (two
/// Hardware whose agentIDs differ only in case would share one token).
pub fn normalize_agent_id(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Normalise a MAC address as a Hardware stores it (`:` or `-` separated, any case) to
/// lower-case, colon-separated form ([`MacAddr::parse_stored`](crate::model::MacAddr)).
pub fn normalize_mac(s: &str) -> Option<String> {
    crate::model::MacAddr::parse_stored(s).map(|m| m.to_string())
}

/// Normalise an IP address to its canonical text form.
pub fn normalize_ip(s: &str) -> Option<String> {
    s.trim().parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Every identity a Hardware claims, or the fields that do not parse.
pub fn hardware_claims(hw: &Hardware) -> Result<Vec<Claim>, Vec<BadClaim>> {
    let v = serde_json::to_value(hw).unwrap_or(Value::Null);
    claims_from_json(&v)
}

/// [`hardware_claims`] on a Hardware's JSON form.
pub fn claims_from_json(v: &Value) -> Result<Vec<Claim>, Vec<BadClaim>> {
    let mut claims = Vec::new();
    let mut bad = Vec::new();
    let spec = &v["spec"];
    if let Some(ifaces) = spec["interfaces"].as_array() {
        for (i, iface) in ifaces.iter().enumerate() {
            let dhcp = &iface["dhcp"];
            if let Some(mac) = dhcp["mac"].as_str().filter(|m| !m.is_empty()) {
                let field = format!("spec.interfaces[{i}].dhcp.mac");
                match normalize_mac(mac) {
                    Some(value) => claims.push(Claim {
                        kind: ClaimKind::Mac,
                        value,
                        field,
                    }),
                    None => bad.push(BadClaim {
                        field,
                        message: format!("{mac:?} is not a MAC address (want aa:bb:cc:dd:ee:ff)"),
                    }),
                }
            }
            if let Some(ip) = dhcp["ip"]["address"].as_str().filter(|a| !a.is_empty()) {
                let field = format!("spec.interfaces[{i}].dhcp.ip.address");
                match normalize_ip(ip) {
                    Some(value) => claims.push(Claim {
                        kind: ClaimKind::Ip,
                        value,
                        field,
                    }),
                    None => bad.push(BadClaim {
                        field,
                        message: format!("{ip:?} is not an IP address"),
                    }),
                }
            }
        }
    }
    if let Some(agent) = spec["agentID"].as_str().filter(|a| !a.is_empty()) {
        claims.push(Claim {
            kind: ClaimKind::AgentId,
            value: normalize_agent_id(agent),
            field: "spec.agentID".into(),
        });
    }
    if let Some(id) = spec["metadata"]["instance"]["id"]
        .as_str()
        .filter(|a| !a.is_empty())
    {
        claims.push(Claim {
            kind: ClaimKind::InstanceId,
            value: id.to_string(),
            field: "spec.metadata.instance.id".into(),
        });
    }
    if bad.is_empty() { Ok(claims) } else { Err(bad) }
}

/// `namespace/name` of an object.
pub(crate) fn owner(obj: &Object) -> String {
    format!("{}/{}", obj.namespace(), obj.name())
}

/// `namespace/name` of a Hardware.
fn owner_of(hw: &Hardware) -> String {
    format!(
        "{}/{}",
        hw.metadata.namespace.as_deref().unwrap_or(""),
        hw.metadata.name.as_deref().unwrap_or("")
    )
}

/// The in-memory lookup maps.
#[derive(Debug, Default, Clone)]
pub struct LookupIndex {
    maps: HashMap<ClaimKind, HashMap<String, Arc<Hardware>>>,
    claims: HashMap<String, Vec<Claim>>,
    workflows: HashMap<String, BTreeMap<String, Arc<Workflow>>>,
    workflow_agent: HashMap<String, String>,
}

impl LookupIndex {
    /// Find the Hardware holding `value` as a `kind` claim.
    pub fn get(&self, kind: ClaimKind, value: &str) -> Option<Arc<Hardware>> {
        let map = self.maps.get(&kind)?;
        match kind {
            ClaimKind::AgentId => map.get(&normalize_agent_id(value)).cloned(),
            _ => map.get(value).cloned(),
        }
    }

    /// [`LookupIndex::get`] for a value as a client gives it: a MAC or IP in any form.
    pub fn lookup(&self, kind: ClaimKind, value: &str) -> Option<Arc<Hardware>> {
        // Fast path: already normalised (what boots passes).
        if let Some(hw) = self.get(kind, value) {
            return Some(hw);
        }
        match kind {
            ClaimKind::Mac => self.get(kind, &normalize_mac(value)?),
            ClaimKind::Ip => self.get(kind, &normalize_ip(value)?),
            ClaimKind::AgentId | ClaimKind::InstanceId => None,
        }
    }

    /// Workflows assigned to an agent, ordered by namespace/name.
    pub fn workflows_by_agent(&self, agent: &str) -> Vec<Arc<Workflow>> {
        self.workflows
            .get(agent)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The first claim of `claims` that another Hardware (not `owner`) already holds.
    pub fn conflict(&self, owner: &str, claims: &[Claim]) -> Option<(Claim, String)> {
        claims.iter().find_map(|c| {
            let holder = self.maps.get(&c.kind)?.get(&c.value)?;
            let holder = owner_of(holder);
            (holder != owner).then(|| (c.clone(), holder))
        })
    }

    /// Insert or replace a Hardware or Workflow; false for the kinds that are not indexed.
    pub fn upsert(&mut self, obj: &Object) -> bool {
        match obj {
            Object::Hardware(h) => self.upsert_hardware(h.clone()),
            Object::Workflow(w) => self.upsert_workflow(w.clone()),
            _ => return false,
        }
        true
    }

    /// Remove the Hardware or Workflow `owner` (`namespace/name`); false for the kinds that are
    /// not indexed.
    pub fn remove(&mut self, kind: Kind, owner: &str) -> bool {
        match kind {
            Kind::Hardware => self.remove_hardware_by_owner(owner),
            Kind::Workflow => self.remove_workflow(owner),
            _ => return false,
        }
        true
    }

    /// Insert or replace a Hardware. Claims that do not parse are skipped (the store refuses
    /// such writes; the kube backend may still see them from other writers).
    pub fn upsert_hardware(&mut self, hw: Arc<Hardware>) {
        let owner = owner_of(&hw);
        self.remove_hardware_by_owner(&owner);
        let claims = hardware_claims(&hw).unwrap_or_default();
        for c in &claims {
            self.maps
                .entry(c.kind)
                .or_default()
                .entry(c.value.clone())
                .or_insert_with(|| hw.clone());
        }
        self.claims.insert(owner, claims);
    }

    /// Remove a Hardware by `namespace/name`.
    pub fn remove_hardware_by_owner(&mut self, owner: &str) {
        if let Some(old) = self.claims.remove(owner) {
            for c in old {
                if let Some(m) = self.maps.get_mut(&c.kind)
                    && m.get(&c.value).is_some_and(|h| owner_of(h) == owner)
                {
                    m.remove(&c.value);
                }
            }
        }
    }

    /// Insert or replace a Workflow.
    pub fn upsert_workflow(&mut self, wf: Arc<Workflow>) {
        let key = format!(
            "{}/{}",
            wf.metadata.namespace.as_deref().unwrap_or(""),
            wf.metadata.name.as_deref().unwrap_or("")
        );
        self.remove_workflow(&key);
        if let Some(agent) = wf.agent_id() {
            let agent = agent.to_string();
            self.workflows
                .entry(agent.clone())
                .or_default()
                .insert(key.clone(), wf);
            self.workflow_agent.insert(key, agent);
        }
    }

    /// Remove a Workflow by `namespace/name`.
    pub fn remove_workflow(&mut self, key: &str) {
        if let Some(agent) = self.workflow_agent.remove(key)
            && let Some(m) = self.workflows.get_mut(&agent)
        {
            m.remove(key);
            if m.is_empty() {
                self.workflows.remove(&agent);
            }
        }
    }
}

/// Refuse a Hardware whose identities do not parse, repeat within the object, or are already
/// claimed by another Hardware in `index`. Other kinds pass.
pub fn check_hardware_claims(index: &LookupIndex, obj: &Object) -> Result<(), StoreError> {
    let Object::Hardware(hw) = obj else {
        return Ok(());
    };
    let key = obj.key();
    let v = serde_json::to_value(&**hw).unwrap_or(Value::Null);
    let claims = claims_from_json(&v).map_err(|bad| StoreError::Invalid {
        key: key.clone(),
        field: bad[0].field.clone(),
        message: bad[0].message.clone(),
    })?;
    // Two interfaces of one Hardware claiming the same MAC or IP is a typo worth refusing too.
    for (i, a) in claims.iter().enumerate() {
        if let Some(b) = claims[..i]
            .iter()
            .find(|b| b.kind == a.kind && b.value == a.value)
        {
            return Err(StoreError::Invalid {
                key,
                field: a.field.clone(),
                message: format!("{:?} is already used by {}", a.value, b.field),
            });
        }
    }
    let owner = format!("{}/{}", key.namespace, key.name);
    if let Some((claim, holder)) = index.conflict(&owner, &claims) {
        return Err(StoreError::Duplicate {
            key,
            field: claim.field,
            value: claim.value,
            owner: holder,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_normalisation() {
        assert_eq!(
            normalize_mac("AA:bb:CC:00:11:22").as_deref(),
            Some("aa:bb:cc:00:11:22")
        );
        assert_eq!(
            normalize_mac("aa-bb-cc-00-11-22").as_deref(),
            Some("aa:bb:cc:00:11:22")
        );
        for bad in [
            "",
            "aa:bb:cc:00:11",
            "aa:bb:cc:00:11:2g",
            "aabb.cc00.1122",
            "aa:bb:cc:00:11:222",
        ] {
            assert_eq!(normalize_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn ip_normalisation() {
        assert_eq!(normalize_ip(" 10.0.0.1 ").as_deref(), Some("10.0.0.1"));
        assert_eq!(normalize_ip("2001:DB8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(normalize_ip("10.0.0.256"), None);
    }

    #[test]
    fn claims_and_bad_fields() {
        let v = serde_json::json!({"spec": {
        "agentID": "agent-1",
        "metadata": {"instance": {"id": "i-1"}},
        "interfaces": [
            {"dhcp": {"mac": "AA:BB:CC:DD:EE:FF", "ip": {"address": "10.0.0.5"}}},
            {"dhcp": {"mac": "nope", "ip": {"address": "10.0.0.999"}}}
        ]}});
        let bad = claims_from_json(&v).unwrap_err();
        assert_eq!(bad[0].field, "spec.interfaces[1].dhcp.mac");
        assert_eq!(bad[1].field, "spec.interfaces[1].dhcp.ip.address");
        let ok = serde_json::json!({"spec": {
            "agentID": "agent-1",
            "metadata": {"instance": {"id": "i-1"}},
            "interfaces": [{"dhcp": {"mac": "AA:BB:CC:DD:EE:FF", "ip": {"address": "10.0.0.5"}}}]}});
        let claims = claims_from_json(&ok).unwrap();
        let kinds: Vec<_> = claims.iter().map(|c| (c.kind, c.value.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (ClaimKind::Mac, "aa:bb:cc:dd:ee:ff"),
                (ClaimKind::Ip, "10.0.0.5"),
                (ClaimKind::AgentId, "agent-1"),
                (ClaimKind::InstanceId, "i-1"),
            ]
        );
    }

    /// Worker tokens lower-case the agent ID, so two Hardware whose agentIDs differ only in
    /// case would share a token: the second claim conflicts, and lookups ignore case.
    #[test]
    fn agent_ids_are_unique_ignoring_case() {
        let hw = |name: &str, agent: &str| -> Arc<Hardware> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "tinkerbell.org/v1alpha1", "kind": "Hardware",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"agentID": agent}}))
                .unwrap(),
            )
        };
        let mut index = LookupIndex::default();
        index.upsert_hardware(hw("a", "Worker-A"));
        let b = hw("b", " worker-a ");
        let claims = hardware_claims(&b).unwrap();
        let (claim, holder) = index.conflict("default/b", &claims).expect("conflict");
        assert_eq!(
            (claim.field.as_str(), holder.as_str()),
            ("spec.agentID", "default/a")
        );
        assert!(index.get(ClaimKind::AgentId, "WORKER-a").is_some());
    }
}
