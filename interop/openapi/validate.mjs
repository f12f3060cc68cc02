// Validates an OpenAPI (Swagger 2.0) document with swagger-parser (schema
// and spec checks, every $ref resolved), then checks what tokend's
// document must say: its title and version, the security schemes, a 4xx
// answer with the google.rpc.Status shape on every operation, an optional
// POST /token body, and readable names for map query parameters.
import SwaggerParser from "@apidevtools/swagger-parser";
import { readFile } from "node:fs/promises";

const file = process.argv[2];
const raw = JSON.parse(await readFile(file, "utf8"));
await SwaggerParser.validate(structuredClone(raw));

const problems = [];
const check = (ok, what) => { if (!ok) problems.push(what); };
check(raw.info?.title === "tokend", `info.title is ${JSON.stringify(raw.info?.title)}, want "tokend"`);
check(/^\d+\.\d+\.\d+$/.test(raw.info?.version ?? ""), `info.version is ${JSON.stringify(raw.info?.version)}, want a version`);
for (const s of ["AdminToken", "ServiceCredential", "OIDCBearer"]) {
  check(raw.securityDefinitions?.[s]?.in === "header", `securityDefinitions.${s} is missing`);
}
check(raw.definitions?.rpcStatus?.properties?.details, "definitions.rpcStatus (google.rpc.Status) is missing");
for (const [path, ops] of Object.entries(raw.paths)) {
  for (const [method, op] of Object.entries(ops)) {
    const where = `${method.toUpperCase()} ${path}`;
    const fours = Object.keys(op.responses).filter((c) => /^4\d\d$/.test(c));
    check(fours.length > 0, `${where}: no 4xx answer`);
    for (const c of fours) {
      check(op.responses[c].schema?.$ref === "#/definitions/rpcStatus", `${where}: answer ${c} is not a google.rpc.Status`);
    }
    if (path.startsWith("/v1/") && path !== "/v1/tokens:verify") {
      check(JSON.stringify(op.security) === '[{"AdminToken":[]}]', `${where}: security is ${JSON.stringify(op.security)}, want the admin token`);
    }
    if (method === "get") {
      check(!op.responses["413"] && !op.responses["415"], `${where}: lists 413 or 415, which only a body can cause`);
    }
    for (const p of op.parameters ?? []) {
      check(!/\[(string|int\d*|bool)\]/.test(p.name), `${where}: parameter ${p.name} is named after its key's type`);
    }
  }
}
for (const method of ["get", "post"]) {
  // A request naming no application, with several and no default: 503.
  check(raw.paths["/token"]?.[method]?.responses?.["503"]?.schema?.$ref === "#/definitions/rpcStatus",
    `${method.toUpperCase()} /token: no 503 answer (no default application, audit log required) with a google.rpc.Status`);
}
const mintBody = raw.paths["/token"]?.post?.parameters?.find((p) => p.in === "body");
check(mintBody && mintBody.required === false, "POST /token: the body must be optional (an empty body mints with every default)");
if (problems.length) {
  console.error(`${file}:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`${file}: valid (swagger-parser) and complete`);
