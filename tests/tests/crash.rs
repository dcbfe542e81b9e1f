//! A node killed with SIGKILL in the middle of a load restarts on its data with every
//! acknowledged transaction and the same state.

use std::{collections::HashMap, time::Duration};

use alloy::{
    consensus::TxEip1559,
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, TxKind, U256},
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use bcos_sdk::crypto::AccountKey;
use bcos_tests::{Devnet, erc20::ERC20, wait_for};

const CHAIN_ID: u64 = 20200;
const SENDERS: usize = 20;
const TRANSFERS_PER_SENDER: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_transaction() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut devnet = Devnet::start(&dir.path().join("chain"))?;
    let url: alloy::transports::http::reqwest::Url = devnet.endpoints().http.parse()?;
    let owner = PrivateKeySigner::random();
    let provider =
        ProviderBuilder::new().wallet(EthereumWallet::from(owner.clone())).connect_client(bcos_tests::rpc_client(url));
    let token = ERC20::deploy(&provider, "Crash".into(), "CRS".into(), U256::from(1_000_000_000u64)).await?;
    let token_address = *token.address();

    // Fund the senders.
    let senders: Vec<AccountKey> = (0..SENDERS).map(|_| AccountKey::generate()).collect();
    let mut last = None;
    for sender in &senders {
        last = Some(token.transfer(sender.address(), U256::from(1_000_000u64)).send().await?.watch());
    }
    if let Some(pending) = last {
        pending.await?;
    }

    // Pre-sign transfers to fixed recipients; send them until about half are acknowledged, then
    // kill the node while the rest are still being sent.
    let recipients: Vec<Address> = (0..5u8).map(|i| Address::repeat_byte(0xA0 + i)).collect();
    let mut raws = Vec::new();
    for nonce in 0..TRANSFERS_PER_SENDER {
        for (i, sender) in senders.iter().enumerate() {
            let to = recipients[(i + nonce as usize) % recipients.len()];
            let input = ERC20::transferCall { to, amount: U256::from(1 + nonce) }.abi_encode();
            let raw = sender.sign_transaction(TxEip1559 {
                chain_id: CHAIN_ID,
                nonce,
                gas_limit: 100_000,
                to: TxKind::Call(token_address),
                input: Bytes::from(input),
                ..Default::default()
            });
            raws.push((to, U256::from(1 + nonce), raw));
        }
    }
    let kill_after = raws.len() / 2;
    let mut acknowledged: Vec<(Address, U256, B256)> = Vec::new();
    for (to, value, raw) in &raws {
        match provider.send_raw_transaction(raw).await {
            Ok(pending) => acknowledged.push((*to, *value, *pending.tx_hash())),
            Err(e) => anyhow::bail!("transfer refused before the crash: {e}"),
        }
        if acknowledged.len() == kill_after {
            break;
        }
    }
    let head_before = provider.get_block_number().await?;
    let block_before = provider.get_block_by_number(head_before.into()).await?.expect("head block");
    devnet.kill()?;

    devnet.restart()?;
    let url: alloy::transports::http::reqwest::Url = devnet.endpoints().http.parse()?;
    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(url));
    let same_block = provider.get_block_by_number(head_before.into()).await?.expect("block survives");
    assert_eq!(same_block.header.hash, block_before.header.hash);
    assert_eq!(same_block.header.state_root, block_before.header.state_root);

    // Every acknowledged transaction is committed, from the pool journal if it was still pending.
    let last_hash = acknowledged.last().map(|a| a.2).expect("some acknowledged");
    wait_for("the last acknowledged transfer", Duration::from_secs(120), || async {
        Ok(provider.get_transaction_receipt(last_hash).await?)
    })
    .await?;
    let mut expected: HashMap<Address, U256> = HashMap::new();
    for (to, value, hash) in &acknowledged {
        let receipt = provider.get_transaction_receipt(*hash).await?.expect("acknowledged transaction committed");
        assert!(receipt.status(), "transfer {hash} failed");
        *expected.entry(*to).or_default() += *value;
    }
    let token = ERC20::new(token_address, &provider);
    for (recipient, amount) in expected {
        assert_eq!(token.balanceOf(recipient).call().await?, amount, "balance of {recipient}");
    }

    // The restarted node keeps accepting and committing where it left off.
    let unsent = raws.iter().skip(acknowledged.len()).map(|r| &r.2);
    let mut tail = None;
    for raw in unsent {
        tail = Some(*provider.send_raw_transaction(raw).await?.tx_hash());
    }
    let tail = tail.expect("unsent transfers remain");
    let receipt = wait_for("the remaining transfers", Duration::from_secs(120), || async {
        Ok(provider.get_transaction_receipt(tail).await?)
    })
    .await?;
    assert!(receipt.status());
    Ok(())
}
