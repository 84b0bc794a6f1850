#!/usr/bin/env bash
# Usage: embed_migrations.sh SERVICE DIR > out.c
# Emits a C table of the versioned SQL migrations in DIR (NNN_name.sql, applied in order).
set -euo pipefail
svc=$1 dir=$2
echo '#include <stddef.h>'
echo '#include "db_migrate.h"'
echo "const db_migration_t ${svc}_migrations[] = {"
for f in $(ls "$dir"/*.sql 2>/dev/null | sort); do
    base=$(basename "$f" .sql)
    ver=$((10#${base%%_*}))
    printf '    {%d, "%s",\n     "' "$ver" "$base"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/$/\\n"/' -e '2,$s/^/     "/' "$f"
    printf '    },\n'
done
echo '    {0, NULL, NULL}'
echo '};'
