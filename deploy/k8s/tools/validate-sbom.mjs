// validate-sbom.mjs FILE [LABEL] - validate a CycloneDX 1.5 JSON document against the official JSON
// Schema that @cyclonedx/cyclonedx-library ships (with ajv and its formats). Used by
// tools/sbom.sh. Prints the errors; exit 1 when the document is not valid.
import fs from "node:fs";
import { Validation, Spec } from "@cyclonedx/cyclonedx-library";

const file = process.argv[2];
const label = process.argv[3] || file;
const validator = new Validation.JsonStrictValidator(Spec.Version.v1dot5);
try {
    const errors = await validator.validate(fs.readFileSync(file, "utf8"));
    if (errors === null) {
        console.log(`sbom: ${label} is valid CycloneDX 1.5`);
        process.exit(0);
    }
    console.log(`sbom: ${label} is not valid CycloneDX 1.5:`);
    console.log(JSON.stringify(errors, null, 2).slice(0, 4000));
} catch (e) {
    console.log(`sbom: cannot validate ${file}: ${e.message}`);
}
process.exit(1);
