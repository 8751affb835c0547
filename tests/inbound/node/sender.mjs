// OpenPGP.js as a customer writing to the provider: one JSON request on
// stdin, one JSON result on stdout, binary values as base64.
//   {"op": "generate", "userID": "Name <address>"} -> {"privateKey", "publicKey"}
//   {"op": "encrypt", "data", "recipientKey", "signingKey" (optional)} -> {"message"}
//   {"op": "sign", "data", "signingKey"} -> {"signature"}  (detached, armored)
//   {"op": "clearsign", "text", "signingKey"} -> {"message"}
// The openpgp package is the one pinned in tests/peers/node.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../peers/node/package.json", import.meta.url));
const openpgp = require("openpgp");

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const bytes = (value) => new Uint8Array(Buffer.from(value, "base64"));

async function main() {
  const request = await readStdin();
  let result;
  if (request.op === "generate") {
    const { privateKey, publicKey } = await openpgp.generateKey({
      type: "curve25519",
      userIDs: [parseUserID(request.userID)],
      format: "armored",
    });
    result = { privateKey, publicKey };
  } else if (request.op === "encrypt") {
    const options = {
      message: await openpgp.createMessage({ binary: bytes(request.data) }),
      encryptionKeys: await openpgp.readKey({ armoredKey: request.recipientKey }),
    };
    if (request.signingKey) {
      options.signingKeys = await openpgp.readPrivateKey({ armoredKey: request.signingKey });
    }
    result = { message: await openpgp.encrypt(options) };
  } else if (request.op === "sign") {
    const signature = await openpgp.sign({
      message: await openpgp.createMessage({ binary: bytes(request.data) }),
      signingKeys: await openpgp.readPrivateKey({ armoredKey: request.signingKey }),
      detached: true,
    });
    result = { signature };
  } else if (request.op === "clearsign") {
    const message = await openpgp.sign({
      message: await openpgp.createCleartextMessage({ text: request.text }),
      signingKeys: await openpgp.readPrivateKey({ armoredKey: request.signingKey }),
    });
    result = { message };
  } else {
    throw new Error(`unknown op ${request.op}`);
  }
  process.stdout.write(JSON.stringify(result));
}

function parseUserID(text) {
  const match = /^(.*?)\s*<([^>]+)>$/.exec(text);
  return match ? { name: match[1], email: match[2] } : { name: text };
}

main().catch((error) => {
  process.stderr.write(String(error.stack ?? error) + "\n");
  process.exit(1);
});
