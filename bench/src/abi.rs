//! The Solidity interface of the benchmark token (`contracts/ERC20.sol`), as far as it is called.
#![allow(missing_docs, unreachable_pub)]

alloy_sol_types::sol! {
    /// The ERC-20 calls the benchmark makes.
    interface IERC20 {
        /// Moves `amount` base units from the caller to `to`.
        function transfer(address to, uint256 amount) external returns (bool);
        /// The token balance of `account`.
        function balanceOf(address account) external view returns (uint256);
    }
}
