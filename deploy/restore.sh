#!/bin/sh
# Restore a Guantong node from an archive written by backup.sh.
#
# Stop the node first (`systemctl stop guantong@ID`, `docker compose stop SERVICE`, or
# the sync timer). Everything the restore replaces in HOME is moved aside into
# HOME/before-restore-<UTC time>/, never deleted.
#
# A restored store is older than what the node wrote since the backup. That is safe as long
# as the node takes its own log back from its parent before it writes again, which it does
# on `serve`, `sync` and `put` (not `put --offline`) whenever the parent is reachable. To
# keep the evidence of what was written, a head.json in HOME that is newer than the
# archive's is kept: the node then refuses to write (`recovery_required`) until its parent
# has given the missing entries back. See docs/operations.md, "Recovery".
set -eu

usage() {
    cat <<'EOF'
usage: restore.sh [-f] ARCHIVE [HOME]

Restore the node home and database saved in ARCHIVE (a backup.sh tar.gz) into
HOME (default: $GUANTONG_HOME). The node must be stopped.

  -f   HOME already holds a node (same id): replace it, moving the current
       files aside into HOME/before-restore-<UTC time>/
  -h   show this help

SQLite stores are copied back to db_url's path (default HOME/node.db).
PostgreSQL dumps are restored with pg_restore into the database named by
$GUANTONG_DB_URL or db_url (the password in PGPASSWORD or ~/.pgpass); the
database must exist.
EOF
}

die() {
    echo "restore.sh: $*" >&2
    exit 1
}

# A string key of a node.toml (as `guantong init` writes it: key = "value").
toml_get() {
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\(.*\)\"[[:space:]]*\$/\1/p" \
        "$2" | head -n 1
}

# A key of backup.txt (key = value).
manifest_get() {
    sed -n "s/^$1 = //p" "$staging/node/backup.txt" | head -n 1
}

# The own seq recorded in a head.json ({"origin":…,"seq":N,"head":…}); 0 when absent.
head_seq() {
    if [ -f "$1" ]; then
        seq=$(sed -n 's/.*"seq":[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1)
        echo "${seq:-0}"
    else
        echo 0
    fi
}

force=no
while getopts fh opt; do
    case $opt in
        f) force=yes ;;
        h) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] && [ $# -le 2 ] || { usage >&2; exit 2; }
archive=$1
home=${2:-${GUANTONG_HOME:-}}
[ -n "$home" ] || { usage >&2; exit 2; }
[ -f "$archive" ] || die "no such archive: $archive"

umask 077
staging=$(mktemp -d "${TMPDIR:-/tmp}/guantong-restore.XXXXXX")
trap 'rm -rf "$staging"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$staging/node"
gzip -dc "$archive" >"$staging/backup.tar"
(cd "$staging/node" && tar -xpf ../backup.tar)

[ "$(sed -n 1p "$staging/node/backup.txt" 2>/dev/null)" = "guantong-backup 1" ] ||
    die "$archive is not a Guantong backup (no backup.txt)"
node_id=$(manifest_get node)
db_kind=$(manifest_get database)
db_file=$(manifest_get file)
[ -f "$staging/node/$db_file" ] || die "$archive lacks its database file $db_file"

if [ -f "$home/node.toml" ]; then
    current=$(toml_get id "$home/node.toml")
    [ "$current" = "$node_id" ] ||
        die "$home holds node $current, the archive is of $node_id: nothing changed"
    [ "$force" = yes ] ||
        die "$home already holds $node_id: stop it and rerun with -f to replace it"
fi

# Where the database goes: the settings being restored, unless the environment overrides.
db_url=${GUANTONG_DB_URL:-$(toml_get db_url "$staging/node/node.toml")}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
aside="$home/before-restore-$stamp"
mkdir -p "$home"
chmod 700 "$home"

# Move a path of HOME aside (if it exists) before it is replaced.
set_aside() {
    if [ -e "$1" ]; then
        mkdir -p "$aside"
        mv "$1" "$aside/"
    fi
}

# Keep the newer watermark: it is the evidence that entries were written after the backup.
keep_head=no
if [ "$(head_seq "$home/head.json")" -gt "$(head_seq "$staging/node/head.json")" ]; then
    keep_head=yes
fi

for name in node.toml keys contracts evidence; do
    set_aside "$home/$name"
    if [ -e "$staging/node/$name" ]; then
        cp -pR "$staging/node/$name" "$home/"
    fi
done
if [ "$keep_head" = no ]; then
    set_aside "$home/head.json"
    if [ -f "$staging/node/head.json" ]; then
        cp -p "$staging/node/head.json" "$home/"
    fi
fi

case $db_kind in
    sqlite)
        case $db_url in
            "") db_path="$home/node.db" ;;
            sqlite:///*) db_path=${db_url#sqlite:///} ;;
            *) die "the archive holds a SQLite store but db_url is $db_url" ;;
        esac
        # A WAL or shared-memory file left beside the old store must not meet the new one.
        for suffix in "" -wal -shm -journal; do
            set_aside "$db_path$suffix"
        done
        mkdir -p "$(dirname "$db_path")"
        cp -p "$staging/node/node.db" "$db_path"
        ;;
    postgresql)
        case $db_url in
            postgresql://* | postgres://* | postgresql+psycopg://*) ;;
            *) die "the archive holds a PostgreSQL dump but db_url is '$db_url'" ;;
        esac
        command -v pg_restore >/dev/null 2>&1 || die "pg_restore is not installed"
        pg_restore --clean --if-exists --no-owner --single-transaction \
            --dbname="postgresql://${db_url#*://}" "$staging/node/db.dump"
        ;;
    *)
        die "unknown database kind in the archive: $db_kind"
        ;;
esac

# A quarantine marker (docs/reliability.md) belonged to the store just replaced.
set_aside "$home/store-corrupt.json"

echo "restored $node_id into $home from $archive"
if [ -d "$aside" ]; then
    echo "the files it replaced are in $aside"
fi
parent=$(toml_get parent_url "$home/node.toml")
if [ -z "$parent" ]; then
    echo "this node has no parent (the province): what it wrote after the backup is lost"
elif [ "$keep_head" = yes ]; then
    echo "kept the newer head.json: the node refuses to write until $parent is reachable"
fi
if [ "$(id -u)" = 0 ]; then
    echo "restored as root: give HOME back to the node's user (e.g. chown -R guantong: $home)"
fi
if [ -n "$parent" ]; then
    echo "next: start the node with its parent reachable (or run 'guantong sync --once') so it"
    echo "takes back its own entries before writing; do not use 'put --offline' before that"
fi
