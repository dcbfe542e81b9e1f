//! Keys and certificates, kept in Secrets: created once and never regenerated. Each is created
//! with a create (never an apply), so two reconciles racing cannot both write one: the loser gets
//! `AlreadyExists`, reads the winner's, and uses it.

use std::{collections::BTreeMap, time::Duration};

use alloy_primitives::B256;
use bcos_sdk::{
    crypto::{AccountKey, NodeKey},
    pki::{ChainCa, Member as Institution, MemberCa, Validity},
};
use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, ResourceExt, api::PostParams};

use crate::{crd::ConsortiumChain, names};

/// A key or certificate that could not be read, made or stored.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The API server refused.
    #[error("Secret {name}: {source}")]
    Kube {
        /// The Secret.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// A Secret lacks a key the operator needs.
    #[error("Secret {name} has no {key:?}")]
    MissingKey {
        /// The Secret.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A key or certificate in a Secret cannot be used.
    #[error("Secret {name}: {reason}")]
    Invalid {
        /// The Secret.
        name: String,
        /// Why.
        reason: String,
    },
    /// Issuing failed.
    #[error("issuing {what}: {source}")]
    Issue {
        /// What was being issued.
        what: String,
        /// Why.
        source: bcos_sdk::pki::PkiError,
    },
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn validity(days: u32) -> Validity {
    Validity::starting(std::time::SystemTime::now(), DAY * days)
}

fn kube_err(name: &str) -> impl FnOnce(kube::Error) -> IdentityError + '_ {
    move |source| IdentityError::Kube { name: name.to_owned(), source }
}

/// A Secret's value under `key`, as UTF-8 text.
fn text(secret: &Secret, name: &str, key: &str) -> Result<String, IdentityError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(|| IdentityError::MissingKey { name: name.to_owned(), key: key.to_owned() })?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| IdentityError::Invalid { name: name.to_owned(), reason: format!("{key} is not UTF-8 text") })
}

/// A CA's Secret: its certificate and key PEMs.
fn ca_secret(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
    cert_pem: &str,
    key_pem: String,
) -> Secret {
    let data =
        BTreeMap::from([(names::CA_CERT_KEY.to_owned(), cert_pem.to_owned()), (names::CA_KEY_KEY.to_owned(), key_pem)]);
    secret(name, namespace, labels, owner, data)
}

/// The certificate and key PEMs of a CA's Secret.
fn ca_pems(secret: &Secret, name: &str) -> Result<(String, String), IdentityError> {
    Ok((text(secret, name, names::CA_CERT_KEY)?, text(secret, name, names::CA_KEY_KEY)?))
}

/// Maps a CA that does not load to an error naming its Secret.
fn invalid(name: &str) -> impl FnOnce(bcos_sdk::pki::PkiError) -> IdentityError + '_ {
    move |error| IdentityError::Invalid { name: name.to_owned(), reason: error.to_string() }
}

/// A Secret's 32-byte hex key under `key`.
fn hex_secret(secret: &Secret, name: &str, key: &str) -> Result<[u8; 32], IdentityError> {
    let text = text(secret, name, key)?;
    hex::decode(text.trim()).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(|| IdentityError::Invalid {
        name: name.to_owned(),
        reason: format!("{key} is not a 32-byte hex key"),
    })
}

fn secret(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
    data: BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data.into_iter().map(|(key, value)| (key, ByteString(value.into_bytes()))).collect()),
        ..Default::default()
    }
}

/// Reads Secret `name`, or creates it with `make()`'s contents when it does not exist; when
/// another writer created it first, that one is read.
async fn get_or_create(
    api: &Api<Secret>,
    name: &str,
    make: impl FnOnce() -> Result<Secret, IdentityError>,
) -> Result<(Secret, bool), IdentityError> {
    if let Some(existing) = api.get_opt(name).await.map_err(kube_err(name))? {
        return Ok((existing, false));
    }
    match api.create(&PostParams::default(), &make()?).await {
        Ok(created) => Ok((created, true)),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok((api.get(name).await.map_err(kube_err(name))?, false))
        }
        Err(source) => Err(IdentityError::Kube { name: name.to_owned(), source }),
    }
}

/// The chain CA: from `spec.ca.existingSecret` (a user's Secret), or the operator's own,
/// created on first use and owned by `owner` (the chain). The flag says whether it was created now.
pub async fn chain_ca(
    api: &Api<Secret>,
    chain: &ConsortiumChain,
    owner: OwnerReference,
) -> Result<(ChainCa, bool), IdentityError> {
    let chain_name = chain.name_any();
    let (name, secret_obj, created) = match &chain.spec.ca.existing_secret {
        Some(name) => (name.clone(), api.get(name).await.map_err(kube_err(name))?, false),
        None => {
            let name = names::chain_ca_secret(&chain_name);
            let (secret_obj, created) = get_or_create(api, &name, || {
                let ca = ChainCa::generate(&chain_name, validity(chain.spec.ca.validity_days))
                    .map_err(|source| IdentityError::Issue { what: "the chain CA".into(), source })?;
                let namespace = chain.namespace().unwrap_or_default();
                Ok(ca_secret(&name, &namespace, names::chain_labels(&chain_name), owner, ca.cert().pem(), ca.key_pem()))
            })
            .await?;
            (name, secret_obj, created)
        }
    };
    let (cert, key) = ca_pems(&secret_obj, &name)?;
    let ca = ChainCa::from_pem(&cert, &key, &format!("Secret {name}")).map_err(invalid(&name))?;
    Ok((ca, created))
}

/// The operator's governance account of `chain`, created on first use.
pub async fn admin_key(
    api: &Api<Secret>,
    chain: &ConsortiumChain,
    owner: OwnerReference,
) -> Result<AccountKey, IdentityError> {
    let chain_name = chain.name_any();
    let name = names::admin_secret(&chain_name);
    let (secret_obj, _) = get_or_create(api, &name, || {
        let key = AccountKey::generate();
        Ok(secret(
            &name,
            &chain.namespace().unwrap_or_default(),
            names::chain_labels(&chain_name),
            owner,
            BTreeMap::from([
                (names::ADMIN_KEY_KEY.to_owned(), hex::encode(key.secret())),
                ("address".to_owned(), key.address().to_string()),
            ]),
        ))
    })
    .await?;
    AccountKey::from_secret(hex_secret(&secret_obj, &name, names::ADMIN_KEY_KEY)?).ok_or_else(|| {
        IdentityError::Invalid { name: name.clone(), reason: "admin.key is not a valid secp256k1 key".into() }
    })
}

/// A member's CA, issued by the chain CA on first use. The flag says whether it was created now.
#[allow(clippy::too_many_arguments)]
pub async fn member_ca(
    api: &Api<Secret>,
    chain: &str,
    member: &str,
    namespace: &str,
    institution: &Institution,
    chain_ca: &ChainCa,
    validity_days: u32,
    owner: OwnerReference,
) -> Result<(MemberCa, bool), IdentityError> {
    let name = names::member_ca_secret(chain, member);
    let (secret_obj, created) = get_or_create(api, &name, || {
        let ca = chain_ca
            .issue_member_ca(institution, validity(validity_days))
            .map_err(|source| IdentityError::Issue { what: format!("the member CA of {member}"), source })?;
        Ok(ca_secret(&name, namespace, names::member_labels(chain, member), owner, ca.cert().pem(), ca.key_pem()))
    })
    .await?;
    let (cert, key) = ca_pems(&secret_obj, &name)?;
    let ca = MemberCa::from_pem(&cert, &key, &format!("Secret {name}")).map_err(invalid(&name))?;
    Ok((ca, created))
}

/// The node ids of `pods`, creating a key and certificate for each Pod that has none yet (in the
/// member's node Secret; existing ones are kept). Returns the ids and how many were created.
#[allow(clippy::too_many_arguments)]
pub async fn node_identities(
    api: &Api<Secret>,
    chain: &str,
    member: &str,
    namespace: &str,
    pods: &[String],
    member_ca: &MemberCa,
    validity_days: u32,
    owner: OwnerReference,
) -> Result<(BTreeMap<String, B256>, usize), IdentityError> {
    let name = names::node_keys_secret(chain, member);
    let issue = |pod: &str| -> Result<(String, String), IdentityError> {
        let key = NodeKey::generate();
        let chain_pem = member_ca
            .issue_node_chain(&key.node_id(), validity(validity_days))
            .map_err(|source| IdentityError::Issue { what: format!("the certificate of {pod}"), source })?
            .pem();
        Ok((hex::encode(key.secret()), chain_pem))
    };
    let (mut secret_obj, _) = get_or_create(api, &name, || {
        Ok(secret(&name, namespace, names::member_labels(chain, member), owner.clone(), BTreeMap::new()))
    })
    .await?;
    let data = secret_obj.data.get_or_insert_with(BTreeMap::new);
    let mut created = 0;
    for pod in pods {
        if data.contains_key(&names::node_key_file(pod)) {
            continue;
        }
        let (key, chain_pem) = issue(pod)?;
        data.insert(names::node_key_file(pod), ByteString(key.into_bytes()));
        data.insert(names::node_cert_file(pod), ByteString(chain_pem.into_bytes()));
        created += 1;
    }
    if created > 0 {
        // A replace carries the resourceVersion read above: a concurrent writer makes it fail
        // with a conflict and the next reconcile starts over, so no key is ever overwritten.
        secret_obj = api.replace(&name, &PostParams::default(), &secret_obj).await.map_err(kube_err(&name))?;
    }
    let mut ids = BTreeMap::new();
    for pod in pods {
        let secret_key = hex_secret(&secret_obj, &name, &names::node_key_file(pod))?;
        ids.insert(pod.clone(), NodeKey::from_secret(secret_key).node_id());
    }
    Ok((ids, created))
}

/// The node ids recorded in a member's node Secret, if it exists: Pod name to id.
pub async fn recorded_node_ids(
    api: &Api<Secret>,
    chain: &str,
    member: &str,
) -> Result<BTreeMap<String, B256>, IdentityError> {
    let name = names::node_keys_secret(chain, member);
    let Some(secret_obj) = api.get_opt(&name).await.map_err(kube_err(&name))? else {
        return Ok(BTreeMap::new());
    };
    let mut ids = BTreeMap::new();
    for key in secret_obj.data.iter().flat_map(BTreeMap::keys) {
        let Some(pod) = key.strip_suffix(".key") else { continue };
        ids.insert(pod.to_owned(), NodeKey::from_secret(hex_secret(&secret_obj, &name, key)?).node_id());
    }
    Ok(ids)
}
