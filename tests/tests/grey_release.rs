//! Contract grey release on a running single-node chain, driven over JSON-RPC by alloy: the
//! registry is off until the committee raises the compatibility version to 2; then it registers
//! a contract, releases a second version to 30% of the accounts, widens it to all and rolls it
//! back, while `bcos_resolveContract`, `bcos_contractVersions` and calls of the alias agree.

use std::time::Duration;

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, Bytes, U256, keccak256},
    providers::{Provider, ProviderBuilder},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolValue},
};
use anyhow::{Context, ensure};
use bcos_sdk::types::system::{
    CONTRACT_VERSIONS_ADDRESS, GOVERNANCE_ADDRESS, SYSTEM_CONFIG_ADDRESS, contract_alias, release_bucket,
};
use bcos_tests::{Devnet, contract_versions::IContractVersions, governance::IGovernance, system_config::ISystemConfig};
use serde::Deserialize;
use serde_json::Value;

const GREETER: &str = "greeter";
/// Accounts whose routing is checked at each step.
const ACCOUNTS: u32 = 200;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Creation code of a contract whose every call logs and returns `version` as one word.
fn versioned(version: u8) -> Bytes {
    // PUSH1 version, PUSH1 0, MSTORE; LOG0 of memory [0, 32); RETURN memory [0, 32).
    let runtime = [0x60, version, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xa0, 0x60, 0x20, 0x60, 0x00, 0xf3];
    // CODECOPY the runtime that follows these 12 bytes to memory 0 and RETURN it.
    let mut create =
        vec![0x60, runtime.len() as u8, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, runtime.len() as u8, 0x60, 0x00, 0xf3];
    create.extend_from_slice(&runtime);
    create.into()
}

/// A provider acting as the devnet's admin, its whole committee.
async fn admin(devnet: &Devnet) -> anyhow::Result<impl Provider> {
    let signer = PrivateKeySigner::from_bytes(&devnet.admin_key()?.secret().into())?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_client(bcos_tests::rpc_client(devnet.endpoints().http.parse()?)))
}

async fn send(provider: &impl Provider, request: TransactionRequest) -> anyhow::Result<TransactionReceipt> {
    let pending = tokio::time::timeout(TIMEOUT, provider.send_transaction(request)).await.context("no answer")??;
    let receipt = tokio::time::timeout(TIMEOUT, pending.get_receipt()).await.context("not committed")??;
    ensure!(receipt.status(), "{} reverted", receipt.transaction_hash);
    Ok(receipt)
}

/// The committee's proposal that the registry (or another system contract) run `call`.
fn proposal(target: Address, call: impl SolCall) -> TransactionRequest {
    let propose = IGovernance::proposeCall { target, data: call.abi_encode().into(), expiresAtBlock: u64::MAX };
    TransactionRequest::default().with_to(GOVERNANCE_ADDRESS).with_input(propose.abi_encode())
}

/// Makes the committee's proposal that `target` run `call`; an error unless it ran.
async fn govern(provider: &impl Provider, target: Address, call: impl SolCall) -> anyhow::Result<TransactionReceipt> {
    let receipt = send(provider, proposal(target, call)).await?;
    if let Some(failed) = receipt.decoded_log::<IGovernance::ProposalFailed>() {
        anyhow::bail!("proposal failed: {}", failed.reason);
    }
    ensure!(receipt.decoded_log::<IGovernance::ProposalExecuted>().is_some(), "proposal not executed");
    Ok(receipt)
}

/// The code and message of the JSON-RPC error `method` answers `params` with.
async fn rpc_error(provider: &impl Provider, method: &'static str, params: Value) -> anyhow::Result<(i64, String)> {
    let answer: Result<Value, _> = provider.raw_request(method.into(), params).await;
    let error = answer.err().context("expected an error")?;
    let payload = error.as_error_resp().with_context(|| format!("not an error response: {error}"))?;
    Ok((payload.code, payload.message.to_string()))
}

/// What `bcos_resolveContract` answers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Resolved {
    name: String,
    alias: Address,
    implementation: Address,
    version: String,
    routed_to_candidate: bool,
}

async fn resolve(provider: &impl Provider, account: Address) -> anyhow::Result<Resolved> {
    Ok(provider.raw_request("bcos_resolveContract".into(), (GREETER, account)).await?)
}

/// Checks every account's routing at `share_bp` through `bcos_resolveContract` and a call of the
/// alias; returns how many go to the candidate.
async fn check_routing(
    provider: &impl Provider,
    accounts: &[Address],
    share_bp: u16,
    (v1, v2): (Address, Address),
) -> anyhow::Result<usize> {
    let alias = contract_alias(GREETER);
    let mut routed = 0;
    for &account in accounts {
        let resolved = resolve(provider, account).await?;
        let to_candidate = release_bucket(account, GREETER) < share_bp;
        let (implementation, version, answer) = if to_candidate { (v2, "2.0.0", 2) } else { (v1, "1.0.0", 1) };
        ensure!(
            (resolved.name.as_str(), resolved.alias, resolved.implementation, resolved.version.as_str())
                == (GREETER, alias, implementation, version)
                && resolved.routed_to_candidate == to_candidate,
            "{account}: {resolved:?}"
        );
        let call = TransactionRequest::default().from(account).to(alias);
        let output = provider.call(call).await?;
        ensure!(U256::abi_decode(&output)? == U256::from(answer), "{account} called {output} through the alias");
        routed += usize::from(to_candidate);
    }
    Ok(routed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committee_releases_a_version_to_a_share_of_accounts_widens_it_and_rolls_it_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let devnet = Devnet::start_with(&dir.path().join("chain"), &["--block-interval-ms", "200"])?;
    release(&devnet).await.with_context(|| format!("node log:\n{}", devnet.log()))
}

async fn release(devnet: &Devnet) -> anyhow::Result<()> {
    let provider = admin(devnet).await?;
    let versions = IContractVersions::new(CONTRACT_VERSIONS_ADDRESS, &provider);
    let accounts: Vec<Address> = (0..ACCOUNTS).map(|i| Address::from_word(keccak256(i.to_be_bytes()))).collect();

    let mut deployed = Vec::new();
    for version in [1, 2] {
        let receipt = send(&provider, TransactionRequest::default().with_deploy_code(versioned(version))).await?;
        deployed.push(receipt.contract_address.context("deployed")?);
    }
    let (v1, v2) = (deployed[0], deployed[1]);
    let register =
        IContractVersions::registerCall { name: GREETER.into(), version: "1.0.0".into(), implementation: v1 };

    // At the genesis' compatibility version 1 there is no registry: the node says so, and the
    // committee's proposal to register is refused.
    let (code, message) =
        rpc_error(&provider, "bcos_resolveContract", serde_json::json!([GREETER, Address::ZERO])).await?;
    assert_eq!(code, -32000, "{message}");
    assert!(message.contains("needs compatibility_version 2 or later; the chain runs 1"), "{message}");
    // (A call rather than a transaction: the wallet would count the refused one's nonce as used.)
    let proposal = proposal(CONTRACT_VERSIONS_ADDRESS, register.clone()).from(devnet.admin_key()?.address());
    let refused = provider.call(proposal).await.expect_err("no registry yet");
    assert!(refused.to_string().contains("needs compatibility_version 2"), "{refused}");

    let raise = ISystemConfig::setValueByKeyCall { key: "compatibility_version".into(), value: "2".into() };
    govern(&provider, SYSTEM_CONFIG_ADDRESS, raise).await?;
    let config: Value = provider.raw_request("bcos_systemConfig".into(), ()).await?;
    assert_eq!(config["compatibilityVersion"], 2, "{config}");
    assert_eq!(
        provider.raw_request::<_, Value>("bcos_resolveContract".into(), (GREETER, Address::ZERO)).await?,
        Value::Null
    );

    let receipt = govern(&provider, CONTRACT_VERSIONS_ADDRESS, register).await?;
    let registered = receipt.decoded_log::<IContractVersions::ContractRegistered>().context("registered event")?;
    assert_eq!(registered.aliasAddress, contract_alias(GREETER));
    assert_eq!(versions.aliasOf(GREETER.into()).call().await?, contract_alias(GREETER));
    assert_eq!(check_routing(&provider, &accounts, 0, (v1, v2)).await?, 0);

    let start = IContractVersions::startReleaseCall {
        name: GREETER.into(),
        version: "2.0.0".into(),
        implementation: v2,
        shareBp: 3_000,
    };
    govern(&provider, CONTRACT_VERSIONS_ADDRESS, start).await?;
    let routed = check_routing(&provider, &accounts, 3_000, (v1, v2)).await?;
    assert!((40..80).contains(&routed), "{routed} of {ACCOUNTS} accounts routed at 30%");
    let release: Value = provider.raw_request("bcos_contractVersions".into(), (GREETER,)).await?;
    assert_eq!(release["stable"], serde_json::json!({ "version": "1.0.0", "implementation": v1 }), "{release}");
    assert_eq!(release["candidate"], serde_json::json!({ "version": "2.0.0", "implementation": v2 }), "{release}");
    assert_eq!(release["shareBp"], 3_000, "{release}");
    // A transaction of the alias runs the version its sender resolves to.
    let sender = devnet.admin_key()?.address();
    let resolved = resolve(&provider, sender).await?;
    let receipt = send(&provider, TransactionRequest::default().with_to(contract_alias(GREETER))).await?;
    let log = receipt.inner.logs().first().context("the version's log")?;
    assert_eq!(log.address(), resolved.implementation, "{resolved:?}");

    let widen = IContractVersions::setShareCall { name: GREETER.into(), shareBp: 10_000 };
    govern(&provider, CONTRACT_VERSIONS_ADDRESS, widen).await?;
    assert_eq!(check_routing(&provider, &accounts, 10_000, (v1, v2)).await?, accounts.len());

    govern(&provider, CONTRACT_VERSIONS_ADDRESS, IContractVersions::rollbackCall { name: GREETER.into() }).await?;
    assert_eq!(check_routing(&provider, &accounts, 0, (v1, v2)).await?, 0);
    let release: Value = provider.raw_request("bcos_contractVersions".into(), (GREETER,)).await?;
    assert_eq!((&release["candidate"], &release["shareBp"]), (&Value::Null, &serde_json::json!(0)), "{release}");
    assert_eq!(release["history"].as_array().map(Vec::len), Some(2), "{release}");

    // Malformed parameters are the caller's error.
    for (method, params) in [
        ("bcos_resolveContract", serde_json::json!(["two words", Address::ZERO])),
        ("bcos_resolveContract", serde_json::json!([GREETER, "0x12"])),
        ("bcos_contractVersions", serde_json::json!([42])),
        ("bcos_contractVersions", serde_json::json!([])),
    ] {
        let (code, message) = rpc_error(&provider, method, params.clone()).await?;
        assert_eq!(code, -32602, "{method} {params}: {message}");
    }
    let (_, message) = rpc_error(&provider, "bcos_contractVersions", serde_json::json!(["two words"])).await?;
    assert!(message.contains("must be 1 to 64 bytes"), "{message}");
    Ok(())
}
