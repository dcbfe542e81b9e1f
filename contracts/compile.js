#!/usr/bin/env node
// Compiles contracts/ERC20.sol with solc-js (standard JSON interface) and
// writes deterministic artifacts to contracts/build/.
//
// Usage: node compile.js <solcjs-install-dir>
//   <solcjs-install-dir> is the npm --prefix directory holding node_modules/solc.
'use strict';

const fs = require('fs');
const path = require('path');

const EXPECTED_SOLC = process.env.SOLC_VERSION || '0.8.28';
const CONTRACT = 'ERC20';

const solcDir = process.argv[2];
if (!solcDir) {
  console.error('usage: node compile.js <solcjs-install-dir>');
  process.exit(2);
}
const solc = require(path.join(path.resolve(solcDir), 'node_modules', 'solc'));

const version = solc.version(); // e.g. "0.8.28+commit.7893614a.Emscripten.clang"
if (!version.startsWith(EXPECTED_SOLC + '+')) {
  console.error(`solc-js version mismatch: have ${version}, want ${EXPECTED_SOLC}`);
  process.exit(1);
}

const contractsDir = __dirname;
const buildDir = path.join(contractsDir, 'build');
const sourceName = `${CONTRACT}.sol`; // fixed unit name => stable metadata hash
const source = fs.readFileSync(path.join(contractsDir, sourceName), 'utf8');

const input = {
  language: 'Solidity',
  sources: { [sourceName]: { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    outputSelection: {
      [sourceName]: {
        [CONTRACT]: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'],
      },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));

let failed = false;
for (const e of output.errors || []) {
  const msg = e.formattedMessage || e.message;
  if (e.severity === 'error') {
    failed = true;
    console.error(msg);
  } else {
    console.warn(msg);
  }
}
if (failed) process.exit(1);

const c = output.contracts && output.contracts[sourceName] && output.contracts[sourceName][CONTRACT];
if (!c) {
  console.error(`no output for ${sourceName}:${CONTRACT}`);
  process.exit(1);
}
const bin = c.evm.bytecode.object;
const runtime = c.evm.deployedBytecode.object;
if (!/^[0-9a-f]+$/.test(bin) || !/^[0-9a-f]+$/.test(runtime)) {
  console.error('bytecode is empty, unlinked or not hex');
  process.exit(1);
}

fs.mkdirSync(buildDir, { recursive: true });
const files = {
  // Single line of hex, no 0x prefix, no trailing newline.
  [`${CONTRACT}.bin`]: bin,
  [`${CONTRACT}.abi.json`]: JSON.stringify(c.abi, null, 2) + '\n',
  // Foundry/Hardhat-style artifact accepted by alloy's `sol!(Name, "path.json")`.
  [`${CONTRACT}.json`]:
    JSON.stringify({ abi: c.abi, bytecode: '0x' + bin, deployedBytecode: '0x' + runtime }, null, 2) + '\n',
};

console.log(`solc ${version} | optimizer runs=200 | evmVersion=cancun`);
for (const [name, data] of Object.entries(files)) {
  const p = path.join(buildDir, name);
  fs.writeFileSync(p, data);
  console.log(`wrote ${path.relative(path.dirname(contractsDir), p)} (${Buffer.byteLength(data)} bytes)`);
}
console.log(`creation bytecode: ${bin.length / 2} bytes, runtime bytecode: ${runtime.length / 2} bytes`);
