// OpenPGP.js as the customer's side: reads one JSON request on stdin and
// writes one JSON result on stdout. Binary values travel as base64.
//   {"op": "decrypt", "message": armored or base64, "binary": bool,
//    "privateKey": armored, "verificationKey": armored}
//   {"op": "verify", "data": base64, "signature": armored, "verificationKey": armored}
//   {"op": "generate", "userID": {"name", "email"}}
//     -> {"privateKey": armored, "publicKey": armored}
//   {"op": "encrypt", "data": base64, "encryptionKey": armored,
//    "signingKey": armored or null} -> {"message": armored}
//   {"op": "sign", "data": base64, "signingKey": armored, "cleartext": bool}
//     -> {"signature": armored detached signature, or the cleartext-signed text}
// Result: {"data": base64 (decrypt only), "signatures": [{"valid", "keyID",
// "hash", "error"}]}
import * as openpgp from "openpgp";

const HASH_NAMES = Object.fromEntries(
  Object.entries(openpgp.enums.hash).map(([name, id]) => [id, name]),
);

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function describe(signatures) {
  const results = [];
  for (const entry of signatures) {
    const result = { keyID: entry.keyID.toHex(), valid: false, hash: null, error: null };
    try {
      const signature = await entry.signature;
      result.hash = HASH_NAMES[signature.packets[0].hashAlgorithm] ?? null;
      result.valid = (await entry.verified) === true;
    } catch (error) {
      result.error = String(error.message ?? error);
    }
    results.push(result);
  }
  return results;
}

async function decrypt(request) {
  const message = request.binary
    ? await openpgp.readMessage({ binaryMessage: Buffer.from(request.message, "base64") })
    : await openpgp.readMessage({ armoredMessage: request.message });
  const { data, signatures } = await openpgp.decrypt({
    message,
    decryptionKeys: await openpgp.readPrivateKey({ armoredKey: request.privateKey }),
    verificationKeys: await openpgp.readKey({ armoredKey: request.verificationKey }),
    format: "binary",
  });
  return {
    data: Buffer.from(data).toString("base64"),
    signatures: await describe(signatures),
  };
}

async function verify(request) {
  const message = await openpgp.createMessage({
    binary: Buffer.from(request.data, "base64"),
  });
  const { signatures } = await openpgp.verify({
    message,
    signature: await openpgp.readSignature({ armoredSignature: request.signature }),
    verificationKeys: await openpgp.readKey({ armoredKey: request.verificationKey }),
  });
  return { signatures: await describe(signatures) };
}

async function generate(request) {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: "ecc",
    curve: "curve25519",
    userIDs: [request.userID],
    format: "armored",
  });
  return { privateKey, publicKey };
}

async function encrypt(request) {
  const message = await openpgp.createMessage({
    binary: Buffer.from(request.data, "base64"),
  });
  const signingKeys = request.signingKey
    ? await openpgp.readPrivateKey({ armoredKey: request.signingKey })
    : undefined;
  const armored = await openpgp.encrypt({
    message,
    encryptionKeys: await openpgp.readKey({ armoredKey: request.encryptionKey }),
    signingKeys,
  });
  return { message: armored };
}

async function sign(request) {
  const signingKeys = await openpgp.readPrivateKey({ armoredKey: request.signingKey });
  if (request.cleartext) {
    const message = await openpgp.createCleartextMessage({
      text: Buffer.from(request.data, "base64").toString("utf8"),
    });
    return { signature: await openpgp.sign({ message, signingKeys }) };
  }
  const message = await openpgp.createMessage({
    binary: Buffer.from(request.data, "base64"),
  });
  return { signature: await openpgp.sign({ message, signingKeys, detached: true }) };
}

const request = await readStdin();
const operations = { decrypt, verify, generate, encrypt, sign };
try {
  const result = await operations[request.op](request);
  process.stdout.write(JSON.stringify(result));
} catch (error) {
  process.stderr.write(`openpgp.js ${request.op} failed: ${error.stack ?? error}\n`);
  process.exit(1);
}
