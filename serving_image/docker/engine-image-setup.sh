#!/bin/bash
# Run once, as root, in each engine stage of serving_image/Dockerfile, after vlmr1 is installed
# into the engine image's Python. What every engine image needs and the engines' own images
# lack; one script so the vLLM, vllm-ascend (910 and 310P) and xllm stages cannot drift apart.
#
#   engine-image-setup.sh [ASCEND_ENV_SCRIPTS...]
#
# 1. `python`: the operator's container command starts `python`; engine images ship `python3`.
# 2. Ascend only (scripts given): CANN's and ATB's set_env.sh scripts are meant for interactive
#    shells, which an exec-form entry point never sources. Source them here, once, and record
#    what they changed in /opt/vlmr1/engine-env.json; vlmr1_serving applies that file to the
#    engine's environment (VLMR1_ENGINE_ENV_FILE). A script missing from the base is skipped.
# 3. uid/gid 1000 and its writable folders (the operator mounts a scratch volume at
#    /var/lib/vlmr1); the stage then sets USER 1000:1000.
set -euo pipefail

command -v python >/dev/null || ln -s "$(command -v python3)" /usr/local/bin/python
python -c 'import vlmr1_serving.__main__'

if [ "$#" -gt 0 ]; then
    mkdir -p /opt/vlmr1
    before=$(mktemp) after=$(mktemp)
    python3 -c 'import json, os, sys; json.dump(dict(os.environ), sys.stdout)' > "$before"
    (
        set +eu  # the vendor scripts reference unset variables
        for script in "$@"; do
            # shellcheck disable=SC1090
            if [ -f "$script" ]; then source "$script"; fi
        done
        python3 -c 'import json, os, sys; json.dump(dict(os.environ), sys.stdout)'
    ) > "$after"
    python3 - "$before" "$after" <<'PY'
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
skip = {"_", "SHLVL", "PWD", "OLDPWD"}
changed = {k: v for k, v in after.items() if before.get(k) != v and k not in skip}
with open("/opt/vlmr1/engine-env.json", "w") as f:
    json.dump(changed, f, indent=1, sort_keys=True)
PY
    rm -f "$before" "$after"
fi

getent group 1000 >/dev/null || groupadd --gid 1000 vlmr1
getent passwd 1000 >/dev/null || useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin vlmr1
mkdir -p /var/lib/vlmr1/cache /var/lib/vlmr1/hf /workspace
chown -R 1000:1000 /var/lib/vlmr1 /workspace
