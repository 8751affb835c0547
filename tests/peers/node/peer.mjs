// OpenPGP.js as the customer's side: reads one JSON request on stdin and
// writes one JSON result on stdout. Binary values travel as base64.
//   {"op": "decrypt", "message": armored or base64, "binary": bool,
//    "privateKey": armored, "verificationKey": armored}
//   {"op": "verify", "data": base64, "signature": armored, "verificationKey": armored}
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

const request = await readStdin();
const operations = { decrypt, verify };
try {
  const result = await operations[request.op](request);
  process.stdout.write(JSON.stringify(result));
} catch (error) {
  process.stderr.write(`openpgp.js ${request.op} failed: ${error.stack ?? error}\n`);
  process.exit(1);
}
