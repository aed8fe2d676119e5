//! A thin command-line front end to [`topologyd::addresses::AddressBinder`], for the network
//! namespace test (`tests/daemon_addresses.rs`) and for trying the binder by hand:
//!
//! ```text
//! address_binder bind IFACE ADDRESS     {"interface":"lo","address":"192.0.2.53/32","outcome":"bound"}
//! address_binder unbind IFACE ADDRESS   {"interface":"lo","address":"192.0.2.53/32","outcome":"unbound"}
//! address_binder owned IFACE            {"interface":"lo","addresses":["192.0.2.53/32"]}
//! address_binder bound IFACE            {"interface":"lo","addresses":["127.0.0.1/8", ...]}
//! ```
//!
//! Prints one JSON object on stdout; on failure prints the error on stderr and exits 1 (2 for
//! bad usage). It changes the interfaces of the network namespace it runs in: run it inside
//! one made for the purpose (`ip netns exec NS address_binder ...`).

use std::process::ExitCode;

use ipnet::IpNet;
use serde_json::{Value, json};
use topologyd::addresses::{AddressBinder, AddressError};

const USAGE: &str = "usage: address_binder bind|unbind IFACE ADDRESS | owned|bound IFACE";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let (command, interface, address) = match arguments.as_slice() {
        [command @ ("bind" | "unbind"), interface, address] => match address.parse::<IpNet>() {
            Ok(address) => (*command, *interface, Some(address)),
            Err(error) => {
                eprintln!("address_binder: {address}: {error}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        [command @ ("owned" | "bound"), interface] => (*command, *interface, None),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command, interface, address).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("address_binder: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: &str,
    interface: &str,
    address: Option<IpNet>,
) -> Result<Value, AddressError> {
    let binder = AddressBinder::new(interface).await?;
    Ok(match (command, address) {
        ("bind", Some(address)) => {
            let outcome = binder.bind(address).await?;
            json!({"interface": interface, "address": address.to_string(), "outcome": outcome.as_str()})
        }
        ("unbind", Some(address)) => {
            let outcome = binder.unbind(address).await?;
            json!({"interface": interface, "address": address.to_string(), "outcome": outcome.as_str()})
        }
        _ => {
            let addresses = if command == "owned" {
                binder.owned().await?
            } else {
                binder.bound().await?
            };
            let addresses: Vec<String> = addresses.iter().map(IpNet::to_string).collect();
            json!({"interface": interface, "addresses": addresses})
        }
    })
}
