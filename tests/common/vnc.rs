//! RFB (VNC) authentication for tests that play a VNC viewer.

use des::cipher::{Block, BlockCipherEncrypt, KeyInit};
use des::Des;

/// The VNC authentication response: the challenge DES-encrypted (ECB, two blocks) with the
/// password (first 8 bytes, zero-padded), each key byte bit-reversed (RFB 6.2.2 as
/// implemented by every VNC server).
pub fn vnc_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = Des::new_from_slice(&key).expect("8-byte key");
    let mut out = [0u8; 16];
    for i in 0..2 {
        let mut block = Block::<Des>::try_from(&challenge[i * 8..i * 8 + 8]).expect("8 bytes");
        cipher.encrypt_block(&mut block);
        out[i * 8..i * 8 + 8].copy_from_slice(&block);
    }
    out
}
