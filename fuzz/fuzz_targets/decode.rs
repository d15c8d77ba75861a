//! Any bytes from the network: decoding must return a value or an error, never panic or hang, and whatever
//! decodes must survive re-encoding.
#![no_main]

use kiln_protocol::{decode, encode_request, Command, Incoming, MasterRequest, WorkerRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Incoming::Request { seq_number, request: Ok(request) }) = decode::<MasterRequest>(data) {
        if let MasterRequest::StartCommand { command_name, args, .. } = &request {
            if let Ok(command) = Command::parse(command_name, args) {
                let _ = Command::parse(command.name(), &command.to_args());
            }
        }
        let again = encode_request(seq_number, &request);
        assert!(decode::<MasterRequest>(&again).is_ok());
    }
    if let Ok(Incoming::Request { seq_number, request: Ok(request) }) = decode::<WorkerRequest>(data) {
        let again = encode_request(seq_number, &request);
        assert!(decode::<WorkerRequest>(&again).is_ok());
    }
});
