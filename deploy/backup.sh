#!/bin/sh
# Back up one Guantong node: its home folder and its database, into one dated tar.gz.
#
# What is saved (see docs/operations.md, "Backups"):
#   node.toml            settings, including the province secret
#   keys/                the node key and retired keys, modes (0600) preserved
#   contracts/           the installed contract bundle, when one was installed
#   evidence/            files attached to task reports, when any
#   head.json            the last own head written (copied after the database, so a
#                        restored node is never ahead of what its head.json says)
#   node.db | db.dump    SQLite: an online `.backup` copy, consistent while the node serves;
#                        PostgreSQL: `pg_dump -Fc` of the database named by db_url
#   backup.txt           what this archive is (read by restore.sh)
#
# The archive holds the private key and the province secret: it is written with mode 0600
# and must be stored like the key itself.
set -eu

usage() {
    cat <<'EOF'
usage: backup.sh [-o DIR] [HOME]

Back up the Guantong node at HOME (default: $GUANTONG_HOME) into
DIR/guantong-<node id>-<UTC time>.tar.gz (default DIR: the current directory)
and print the archive's path. Safe while the node is running.

  -o DIR   where to write the archive
  -h       show this help

The database is the one the node uses: $GUANTONG_DB_URL if set, else db_url in
node.toml, else HOME/node.db. SQLite needs the sqlite3 command (or python3);
PostgreSQL needs pg_dump of the server's major version or newer, with the
password in PGPASSWORD or ~/.pgpass.
EOF
}

die() {
    echo "backup.sh: $*" >&2
    exit 1
}

# The value of a string key in node.toml (as `guantong init` writes it: key = "value").
toml_get() {
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\(.*\)\"[[:space:]]*\$/\1/p" \
        "$home/node.toml" | head -n 1
}

out_dir=.
while getopts o:h opt; do
    case $opt in
        o) out_dir=$OPTARG ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || { usage >&2; exit 2; }
home=${1:-${GUANTONG_HOME:-}}
[ -n "$home" ] || { usage >&2; exit 2; }
[ -f "$home/node.toml" ] || die "$home is not a node home (no node.toml)"
[ -d "$out_dir" ] || die "no such directory: $out_dir"

umask 077
node_id=$(toml_get id)
[ -n "$node_id" ] || die "$home/node.toml has no id"
db_url=${GUANTONG_DB_URL:-$(toml_get db_url)}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
archive="$out_dir/guantong-$node_id-$stamp.tar.gz"
[ ! -e "$archive" ] || die "$archive already exists"

staging=$(mktemp -d "${TMPDIR:-/tmp}/guantong-backup.XXXXXX")
trap 'rm -rf "$staging"; rm -f "$archive.partial"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$staging/node"

# 1. The database first: head.json is copied afterwards, so it is never behind the copy.
case $db_url in
    "" | sqlite:///*)
        db_kind=sqlite
        db_file=node.db
        if [ -z "$db_url" ]; then
            db_path="$home/node.db"
        else
            db_path=${db_url#sqlite:///}
        fi
        [ -f "$db_path" ] || die "no SQLite store at $db_path"
        if command -v sqlite3 >/dev/null 2>&1; then
            sqlite3 "$db_path" ".backup '$staging/node/node.db'"
        elif command -v python3 >/dev/null 2>&1; then
            python3 - "$db_path" "$staging/node/node.db" <<'EOF'
import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
with target:
    source.backup(target)
target.close()
source.close()
EOF
        else
            die "neither sqlite3 nor python3 is installed: cannot copy the store safely"
        fi
        ;;
    postgresql://* | postgres://* | postgresql+psycopg://*)
        db_kind=postgresql
        db_file=db.dump
        command -v pg_dump >/dev/null 2>&1 || die "pg_dump is not installed"
        pg_url="postgresql://${db_url#*://}"
        pg_dump --format=custom --file="$staging/node/db.dump" --dbname="$pg_url"
        ;;
    *)
        die "unsupported db_url (not SQLite or PostgreSQL): $db_url"
        ;;
esac

# 2. The home folder, modes preserved (keys stay 0600 inside the archive).
cp -p "$home/node.toml" "$staging/node/"
for dir in keys contracts evidence; do
    if [ -d "$home/$dir" ]; then
        cp -pR "$home/$dir" "$staging/node/"
    fi
done
if [ -f "$home/head.json" ]; then
    cp -p "$home/head.json" "$staging/node/"
fi

cat >"$staging/node/backup.txt" <<EOF
guantong-backup 1
node = $node_id
created = $stamp
database = $db_kind
file = $db_file
EOF

# 3. One archive, written under a temporary name and renamed when complete.
(cd "$staging/node" && tar -cf "$staging/backup.tar" .)
gzip -c "$staging/backup.tar" >"$archive.partial"
chmod 600 "$archive.partial"
mv "$archive.partial" "$archive"
echo "$archive"
