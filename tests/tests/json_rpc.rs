//! A single-node chain driven over JSON-RPC by alloy: contracts, events, subscriptions, system
//! config changed by the devnet's one-member committee, every transaction rejection with its error
//! code, and a devnet with permission checks.

use std::time::Duration;

use alloy::{
    consensus::{TxEip1559, TxLegacy},
    eips::BlockNumberOrTag,
    network::EthereumWallet,
    primitives::{Address, Bytes, TxKind, U256},
    providers::{Provider, ProviderBuilder, WsConnect},
    rpc::types::Filter,
    signers::local::PrivateKeySigner,
    sol_types::{SolCall, SolEvent},
};
use bcos_sdk::{
    crypto::AccountKey,
    types::system::{GOVERNANCE_ADDRESS, SYSTEM_CONFIG_ADDRESS},
};
use bcos_tests::{
    Devnet, checks::rejection, erc20::ERC20, governance::IGovernance, system_config::ISystemConfig, wait_for,
};
use futures::StreamExt;

const CHAIN_ID: u64 = 20200;
const TIMEOUT: Duration = Duration::from_secs(60);

fn devnet() -> anyhow::Result<(tempfile::TempDir, Devnet)> {
    let dir = tempfile::tempdir()?;
    let devnet = Devnet::start(&dir.path().join("chain"))?;
    Ok((dir, devnet))
}

fn url(devnet: &Devnet) -> anyhow::Result<alloy::transports::http::reqwest::Url> {
    Ok(devnet.endpoints().http.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erc20_deploy_transfer_events_and_revert_reasons() -> anyhow::Result<()> {
    let (_dir, devnet) = devnet()?;
    let owner = PrivateKeySigner::random();
    let owner_address = owner.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(owner))
        .connect_client(bcos_tests::rpc_client(url(&devnet)?));
    assert_eq!(provider.get_chain_id().await?, CHAIN_ID);

    let supply = U256::from(1_000_000u64);
    let token = ERC20::deploy(&provider, "Bank Token".into(), "BNK".into(), supply).await?;
    assert_eq!(token.totalSupply().call().await?, supply);
    assert_eq!(token.balanceOf(owner_address).call().await?, supply);
    assert_eq!(token.symbol().call().await?, "BNK");
    assert!(!provider.get_code_at(*token.address()).await?.is_empty());

    // Follow Transfer events over WebSocket while transferring over HTTP.
    let ws = ProviderBuilder::new().connect_ws(WsConnect::new(devnet.endpoints().ws.clone())).await?;
    let filter = Filter::new().address(*token.address()).event_signature(ERC20::Transfer::SIGNATURE_HASH);
    let mut log_stream = ws.subscribe_logs(&filter).await?.into_stream();
    let mut head_stream = ws.subscribe_blocks().await?.into_stream();

    let recipient = Address::repeat_byte(0x42);
    let receipt = token.transfer(recipient, U256::from(250)).send().await?.get_receipt().await?;
    assert!(receipt.status());
    assert_eq!(receipt.from, owner_address);
    let transfer = receipt.decoded_log::<ERC20::Transfer>().expect("receipt carries the Transfer event");
    assert_eq!((transfer.from, transfer.to, transfer.value), (owner_address, recipient, U256::from(250)));
    assert_eq!(token.balanceOf(recipient).call().await?, U256::from(250));
    assert_eq!(token.balanceOf(owner_address).call().await?, supply - U256::from(250));

    let streamed = tokio::time::timeout(TIMEOUT, log_stream.next()).await?.expect("log subscription open");
    assert_eq!(streamed.transaction_hash, Some(receipt.transaction_hash));
    let decoded = ERC20::Transfer::decode_log_data(streamed.data())?;
    assert_eq!((decoded.to, decoded.value), (recipient, U256::from(250)));
    let head = tokio::time::timeout(TIMEOUT, head_stream.next()).await?.expect("head subscription open");
    assert!(head.number >= 1);

    let logs = provider.get_logs(&filter.clone().from_block(0u64).to_block(BlockNumberOrTag::Latest)).await?;
    // The constructor's mint and the transfer.
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[1].transaction_hash, Some(receipt.transaction_hash));
    let block = provider.get_block_by_number(receipt.block_number.expect("mined").into()).await?.expect("block exists");
    assert!(block.transactions.hashes().any(|h| h == receipt.transaction_hash));
    let fetched = provider.get_transaction_by_hash(receipt.transaction_hash).await?.expect("transaction stored");
    assert_eq!(fetched.block_number, receipt.block_number);

    // A call that reverts surfaces the Solidity reason.
    let err = token.transfer(owner_address, U256::from(1)).from(recipient).call().await.err();
    assert!(err.is_none(), "recipient holds tokens, the transfer call succeeds");
    let err = token.transfer(owner_address, supply).from(recipient).call().await.expect_err("must revert");
    assert!(err.to_string().contains("ERC20: transfer amount exceeds balance"), "{err}");
    let err = token.transferFrom(owner_address, recipient, U256::from(1)).call().await.expect_err("no allowance");
    assert!(err.to_string().contains("ERC20: insufficient allowance"), "{err}");

    // A reverting transaction is mined with status 0 and its reason in the receipt.
    let reverted = token.transfer(recipient, supply * U256::from(2)).gas(200_000).send().await?.get_receipt().await?;
    assert!(!reverted.status());
    let raw: serde_json::Value =
        provider.raw_request("eth_getTransactionReceipt".into(), (reverted.transaction_hash,)).await?;
    assert_eq!(raw["revertReason"], "ERC20: transfer amount exceeds balance");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_config_is_readable_and_changed_only_by_governance_from_the_next_block() -> anyhow::Result<()> {
    let (_dir, devnet) = devnet()?;
    let admin = devnet.admin_key()?;
    let admin_signer = PrivateKeySigner::from_bytes(&admin.secret().into())?;
    let admin_provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(admin_signer))
        .connect_client(bcos_tests::rpc_client(url(&devnet)?));
    let config = ISystemConfig::new(SYSTEM_CONFIG_ADDRESS, &admin_provider);
    assert_eq!(config.blockIntervalMs().call().await?, 500);
    assert_eq!(config.consensusMode().call().await?, "pbft");
    let current = config.getValueByKey("max_txs_per_block".into()).call().await?;
    assert_eq!(current.value, "10000");

    // Even the committee's only member changes nothing by calling the contract itself.
    let err = config.setValueByKey("block_interval_ms".into(), "200".into()).call().await.expect_err("no proposal");
    assert!(err.to_string().contains("is not the governance contract"), "{err}");
    // The devnet's committee is the admin alone: its proposals run at once, and one whose change
    // the contract refuses is recorded as failed, with the reason.
    let governance = IGovernance::new(GOVERNANCE_ADDRESS, &admin_provider);
    let propose = |key: &str, value: &str| {
        let change = ISystemConfig::setValueByKeyCall { key: key.into(), value: value.into() };
        governance.propose(SYSTEM_CONFIG_ADDRESS, change.abi_encode().into(), u64::MAX)
    };
    for (key, value, reason) in [
        ("block_interval_ms", "5", "must be between 50 and 60000"),
        ("consensus_mode", "paxos", "unknown consensus mode"),
    ] {
        let receipt = propose(key, value).send().await?.get_receipt().await?;
        assert!(receipt.status(), "the proposal itself succeeds");
        let failed = receipt.decoded_log::<IGovernance::ProposalFailed>().expect("ProposalFailed event");
        assert!(failed.reason.contains(reason), "{}", failed.reason);
    }
    let receipt = propose("block_interval_ms", "200").send().await?.get_receipt().await?;
    assert!(receipt.status());
    assert!(receipt.decoded_log::<IGovernance::ProposalExecuted>().is_some(), "executed with the proposal");
    let changed = receipt.decoded_log::<ISystemConfig::ConfigChanged>().expect("ConfigChanged event");
    let changed_in = receipt.block_number.expect("mined");
    assert_eq!(changed.enableNumber, U256::from(changed_in + 1));
    let read = config.getValueByKey("block_interval_ms".into()).call().await?;
    assert_eq!((read.value.as_str(), read.enableNumber), ("200", U256::from(changed_in + 1)));
    let node_view: serde_json::Value = admin_provider.raw_request("bcos_systemConfig".into(), ()).await?;
    assert_eq!(node_view["blockIntervalMs"], 200);
    let status: serde_json::Value = admin_provider.raw_request("bcos_nodeStatus".into(), ()).await?;
    assert_eq!(status["chainId"], CHAIN_ID);
    assert_eq!(status["consensusMode"], "pbft");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permissioned_devnet_refuses_accounts_without_roles_and_serves_its_admin() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let devnet = Devnet::start_with(&dir.path().join("chain"), &["--permissions"])?;
    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(url(&devnet)?));
    let stranger = AccountKey::generate();
    let (code, message) = rejection(&provider, &signed(&stranger, 0, 21_000, Bytes::new(), CHAIN_ID)).await?;
    assert_eq!(code, -32017, "{message}");
    assert!(message.contains(&stranger.address().to_string()) && message.contains("transactor"), "{message}");

    // The admin holds every role: it deploys and transacts.
    let admin = PrivateKeySigner::from_bytes(&devnet.admin_key()?.secret().into())?;
    let admin_provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(admin))
        .connect_client(bcos_tests::rpc_client(url(&devnet)?));
    let token = ERC20::deploy(&admin_provider, "Bank Token".into(), "BNK".into(), U256::from(10)).await?;
    let receipt = token.transfer(stranger.address(), U256::from(1)).send().await?.get_receipt().await?;
    assert!(receipt.status());
    Ok(())
}

/// Signs an EIP-1559 transaction with the sdk's libsecp256k1 signer.
fn signed(key: &AccountKey, nonce: u64, gas_limit: u64, input: Bytes, chain_id: u64) -> Bytes {
    key.sign_transaction(TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        to: TxKind::Call(Address::repeat_byte(1)),
        input,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_rejection_has_its_own_code() -> anyhow::Result<()> {
    let (_dir, devnet) = devnet()?;
    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(url(&devnet)?));
    let key = AccountKey::generate();

    let cases: Vec<(&str, Bytes, i64, &str)> = vec![
        ("malformed", Bytes::from_static(&[0x02, 0xc1, 0x80]), -32001, "malformed transaction"),
        ("empty", Bytes::new(), -32001, "malformed transaction"),
        ("blob type", Bytes::from_static(&[0x03, 0xc0]), -32001, "malformed transaction"),
        ("wrong chain id", signed(&key, 0, 21_000, Bytes::new(), 1), -32004, "invalid chain id: expected 20200, got 1"),
        (
            "not replay protected",
            key.sign_transaction(TxLegacy { gas_limit: 21_000, to: TxKind::Call(Address::ZERO), ..Default::default() }),
            -32003,
            "only replay-protected (EIP-155) transactions are allowed",
        ),
        (
            "oversized",
            signed(&key, 0, 5_000_000, Bytes::from(vec![1u8; 200 * 1024]), CHAIN_ID),
            -32007,
            "oversized data",
        ),
        (
            "above block gas limit",
            signed(&key, 0, 2_000_000_000, Bytes::new(), CHAIN_ID),
            -32014,
            "exceeds block gas limit",
        ),
        ("intrinsic gas", signed(&key, 0, 20_000, Bytes::new(), CHAIN_ID), -32015, "intrinsic gas too low"),
        ("nonce gap", signed(&key, 5_000, 21_000, Bytes::new(), CHAIN_ID), -32010, "nonce too high"),
    ];
    for (name, raw, code, message) in &cases {
        let (got_code, got_message) = rejection(&provider, raw).await?;
        assert_eq!(got_code, *code, "{name}: {got_message}");
        assert!(got_message.starts_with(message), "{name}: {got_message}");
    }

    // A tampered signature recovers another sender or none at all.
    let mut tampered = signed(&key, 0, 21_000, Bytes::new(), CHAIN_ID).to_vec();
    let len = tampered.len();
    tampered[len - 40] ^= 0xff;
    let (code, message) = rejection(&provider, &Bytes::from(tampered.clone())).await.unwrap_or((0, String::new()));
    assert!(code == -32006 || code == 0, "tampered signature: {code} {message}");

    // Queue a future nonce: a resubmission is known, a different one at that nonce underpriced.
    let queued = signed(&key, 3, 21_000, Bytes::new(), CHAIN_ID);
    let _queued = provider.send_raw_transaction(&queued).await?;
    let (code, message) = rejection(&provider, &queued).await?;
    assert_eq!((code, message.as_str()), (-32008, "already known"));
    let (code, message) = rejection(&provider, &signed(&key, 3, 22_000, Bytes::new(), CHAIN_ID)).await?;
    assert_eq!((code, message.as_str()), (-32011, "replacement transaction underpriced"));
    let pending: u64 = provider.get_transaction_count(key.address()).pending().await?;
    assert_eq!(pending, 0, "nonce 3 waits for 0..=2");

    // Commit nonce 0, then reuse it.
    let first = signed(&key, 0, 21_000, Bytes::new(), CHAIN_ID);
    let receipt = provider.send_raw_transaction(&first).await?.get_receipt().await?;
    assert!(receipt.status());
    let (code, message) = rejection(&provider, &signed(&key, 0, 30_000, Bytes::new(), CHAIN_ID)).await?;
    assert_eq!((code, message.as_str()), (-32009, "nonce too low: next nonce 1, tx nonce 0"));

    // Malformed JSON-RPC is answered, never crashes the node.
    let bad: Result<serde_json::Value, _> = provider.raw_request("eth_getBalance".into(), ("not-an-address",)).await;
    assert_eq!(bad.expect_err("invalid params").as_error_resp().map(|e| e.code), Some(-32602));
    assert_eq!(provider.get_block_number().await?, receipt.block_number.expect("mined"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_and_a_busy_sender_are_refused() -> anyhow::Result<()> {
    let (_dir, mut devnet) = devnet()?;
    devnet.kill()?;
    let node_file = devnet.dir().join("node0/node.yaml");
    let config = std::fs::read_to_string(&node_file)?;
    let limited = config
        .replace("txpool:\n  capacity: 200000", "txpool:\n  capacity: 3")
        .replace("maxPerSender: 10000", "maxPerSender: 2");
    assert_ne!(limited, config, "node.yaml layout changed: {config}");
    std::fs::write(&node_file, limited)?;
    devnet.restart()?;
    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(url(&devnet)?));

    // Future nonces stay pooled, so the limits are reached deterministically.
    let busy = AccountKey::generate();
    for nonce in 1..=2 {
        let _pooled = provider.send_raw_transaction(&signed(&busy, nonce, 21_000, Bytes::new(), CHAIN_ID)).await?;
    }
    let (code, message) = rejection(&provider, &signed(&busy, 3, 21_000, Bytes::new(), CHAIN_ID)).await?;
    assert_eq!((code, message.as_str()), (-32013, "too many pending transactions from sender (limit 2)"));
    let _last_fit =
        provider.send_raw_transaction(&signed(&AccountKey::generate(), 1, 21_000, Bytes::new(), CHAIN_ID)).await?;
    let (code, message) =
        rejection(&provider, &signed(&AccountKey::generate(), 1, 21_000, Bytes::new(), CHAIN_ID)).await?;
    assert_eq!((code, message.as_str()), (-32012, "txpool is full"));
    let pending: serde_json::Value = provider.raw_request("bcos_pendingTransactionCount".into(), ()).await?;
    assert_eq!(pending, "0x3");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_carry_a_verifiable_certificate_and_metrics_follow_the_chain() -> anyhow::Result<()> {
    let (_dir, devnet) = devnet()?;
    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(url(&devnet)?));
    let key = AccountKey::generate();
    let mut hashes = Vec::new();
    for nonce in 0..5 {
        hashes.push(
            *provider.send_raw_transaction(&signed(&key, nonce, 21_000, Bytes::new(), CHAIN_ID)).await?.tx_hash(),
        );
    }
    let last = *hashes.last().expect("five sent");
    let receipt =
        wait_for("last transaction", TIMEOUT, || async { Ok(provider.get_transaction_receipt(last).await?) }).await?;
    let number = receipt.block_number.expect("mined");
    let block = provider.get_block_by_number(number.into()).await?.expect("block");
    let qc: serde_json::Value =
        provider.raw_request("bcos_getQuorumCertificate".into(), (format!("{number:#x}"),)).await?;
    assert_eq!(qc["blockHash"], serde_json::to_value(block.header.hash)?);
    let votes = qc["votes"].as_array().expect("votes");
    assert_eq!(votes.len(), 1);
    let node_id: alloy::primitives::B256 = serde_json::from_value(votes[0]["nodeId"].clone())?;
    let signature: Bytes = serde_json::from_value(votes[0]["signature"].clone())?;
    let message = bcos_sdk::types::QuorumCertificate::signing_message(block.header.hash, number, 0);
    assert!(bcos_sdk::crypto::verify_node_signature(&node_id, &message, &signature));
    assert_eq!(block.header.extra_data.as_ref(), node_id.as_slice(), "extraData names the proposer");

    // Prometheus metrics and probes report the same chain.
    let http = bcos_tests::http_client();
    let metrics_url = devnet.endpoints().metrics.clone();
    let metrics = http.get(format!("{metrics_url}/metrics")).send().await?.text().await?;
    let value = |name: &str| -> Option<f64> {
        metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    assert!(value("bcos_block_height").is_some_and(|h| h >= number as f64), "{metrics}");
    assert_eq!(value("bcos_txpool_admitted_total"), Some(5.0), "{metrics}");
    assert!(value("bcos_committed_transactions_total").is_some_and(|n| n >= 5.0), "{metrics}");
    assert!(metrics.contains("bcos_rpc_calls_total{api=\"jsonrpc\",method=\"eth_sendRawTransaction\"} 5"), "{metrics}");
    for probe in ["healthz", "readyz"] {
        assert!(http.get(format!("{metrics_url}/{probe}")).send().await?.status().is_success(), "{probe}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_filters_report_new_blocks_and_logs_once() -> anyhow::Result<()> {
    let (_dir, devnet) = devnet()?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(PrivateKeySigner::random()))
        .connect_client(bcos_tests::rpc_client(url(&devnet)?));
    let token = ERC20::deploy(&provider, "Filter".into(), "FLT".into(), U256::from(1_000u64)).await?;
    let block_filter = provider.new_block_filter().await?;
    let log_filter = provider
        .new_filter(&Filter::new().address(*token.address()).event_signature(ERC20::Transfer::SIGNATURE_HASH))
        .await?;
    let receipt = token.transfer(Address::repeat_byte(7), U256::from(3)).send().await?.get_receipt().await?;
    let mined_in = receipt.block_hash.expect("mined");

    let blocks: Vec<alloy::primitives::B256> = provider.get_filter_changes(block_filter).await?;
    assert!(blocks.contains(&mined_in), "block filter reports the new block");
    let again: Vec<alloy::primitives::B256> = provider.get_filter_changes(block_filter).await?;
    assert!(!again.contains(&mined_in), "each block is reported once");

    let logs: Vec<alloy::rpc::types::Log> = provider.get_filter_changes(log_filter).await?;
    assert_eq!(logs.len(), 1, "only the transfer after installation, not the mint");
    assert_eq!(logs[0].transaction_hash, Some(receipt.transaction_hash));
    let all = provider.get_filter_logs(log_filter).await?;
    assert_eq!(all.len(), 1);
    assert!(provider.uninstall_filter(log_filter).await?);
    let gone: Result<Vec<alloy::rpc::types::Log>, _> = provider.get_filter_changes(log_filter).await;
    assert!(gone.expect_err("uninstalled").to_string().contains("filter not found"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_errors_and_the_node_carries_on() -> anyhow::Result<()> {
    let (_dir, devnet) = devnet()?;
    let http = bcos_tests::http_client();
    let endpoint = devnet.endpoints().http.clone();
    let post = |body: String| {
        let request = http.post(&endpoint).header("content-type", "application/json").body(body);
        async move { anyhow::Ok(request.send().await?.text().await?) }
    };
    let code = |text: &str| -> Option<i64> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        value["error"]["code"].as_i64()
    };
    assert_eq!(code(&post("{not json".into()).await?), Some(-32700), "parse error");
    assert_eq!(code(&post(r#"{"jsonrpc":"2.0","id":1,"method":"eth_nope","params":[]}"#.into()).await?), Some(-32601));
    let wrong_types = r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":[{"x":1},"y"]}"#;
    assert_eq!(code(&post(wrong_types.into()).await?), Some(-32602));
    let odd_hex = r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x123"]}"#;
    assert_eq!(code(&post(odd_hex.into()).await?), Some(-32602));
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
    let too_many = format!("[{}]", vec![one; 1001].join(","));
    let answer = post(too_many).await?;
    assert!(answer.contains("error"), "an oversized batch is refused: {}", &answer[..answer.len().min(200)]);
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x{}"]}}"#,
        "ab".repeat(6 << 20)
    );
    // Over maxRequestBytes: answered 413, or the connection is closed before the body is read.
    match http.post(&endpoint).header("content-type", "application/json").body(huge).send().await {
        Ok(response) => assert_eq!(response.status().as_u16(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }

    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(url(&devnet)?));
    assert_eq!(provider.get_chain_id().await?, CHAIN_ID, "still serving");
    Ok(())
}
