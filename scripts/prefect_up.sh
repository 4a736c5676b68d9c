#!/usr/bin/env bash
exec "$(dirname "$0")/prefect_local.sh" up "$@"
