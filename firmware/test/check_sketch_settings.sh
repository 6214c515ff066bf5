#!/bin/sh
# The sketch must refuse to compile with server settings that cannot work (see "the server
# settings" in cardiospike_esp32.ino), and compile with those that can. Each case parses a copy
# of the sketch next to its own secrets.h, against the stand-in headers of `make check-sketch`;
# a refusal counts only when the compiler names the expected reason.
#
#   sh test/check_sketch_settings.sh      (from firmware/; make test runs it)
set -eu

CXX=${CXX:-g++}
work=build/sketch-settings
failures=0

# case NAME EXPECTED URL [CA]: EXPECTED is a fragment of the one error the compiler must give,
# or "" when the sketch must compile
case_() {
  name=$1 expected=$2 url=$3
  dir=$work/$name
  rm -rf "$dir"
  mkdir -p "$dir"
  cp cardiospike_esp32/cardiospike_esp32.ino "$dir/"
  {
    echo '#pragma once'
    echo '#define CARDIOSPIKE_WIFI_SSID "ssid"'
    echo '#define CARDIOSPIKE_WIFI_PASSWORD "password"'
    echo "#define CARDIOSPIKE_SERVER_URL \"$url\""
    echo '#define CARDIOSPIKE_DEVICE_TOKEN "csd_token"'
    if [ $# -ge 4 ]; then printf '#define CARDIOSPIKE_SERVER_ROOT_CA "%s"\n' "$4"; fi
  } >"$dir/secrets.h"
  # the copy finds its secrets.h first (its own folder), then src/cardiospike through -I
  if "$CXX" -std=gnu++11 -x c++ -fsyntax-only -Wall -Wextra -Werror -Itest/arduino_stubs \
      -Icardiospike_esp32 "$dir/cardiospike_esp32.ino" >"$dir/output" 2>&1; then
    if [ -n "$expected" ]; then
      echo "FAIL sketch settings $name: compiled, should have failed with: $expected"
      failures=$((failures + 1))
      return
    fi
  else
    errors=$(grep -c 'error:' "$dir/output" || true)
    if [ -z "$expected" ] || [ "$errors" != 1 ] || ! grep -qF -- "$expected" "$dir/output"; then
      echo "FAIL sketch settings $name: expected ${expected:-no error}, got:"
      cat "$dir/output"
      failures=$((failures + 1))
      return
    fi
  fi
  echo "ok   sketch settings $name"
}

pem='-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n'
case_ http_without_ca "" "http://192.168.1.10:8000"
case_ https_with_ca "" "https://monitor.example.org" "$pem"
case_ https_without_ca "CARDIOSPIKE_SERVER_ROOT_CA is not set" "https://monitor.example.org"
case_ http_with_ca "must start with https://" "http://192.168.1.10:8000" "$pem"
case_ no_scheme "must start with http:// or https://" "192.168.1.10:8000"
case_ upper_case_scheme "must start with http:// or https://" "HTTP://192.168.1.10:8000"
case_ trailing_slash "must not end with a slash" "http://192.168.1.10:8000/"

if [ "$failures" -ne 0 ]; then
  echo "$failures sketch settings cases failed"
  exit 1
fi
