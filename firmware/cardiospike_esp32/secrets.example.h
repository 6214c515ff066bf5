// Copy this file to secrets.h (same folder) and fill it in. secrets.h is in .gitignore: never
// commit a Wi-Fi password or a device token.
#pragma once

// Wi-Fi (2.4 GHz: the ESP32 has no 5 GHz radio)
#define CARDIOSPIKE_WIFI_SSID "your-network"
#define CARDIOSPIKE_WIFI_PASSWORD "your-password"

// The CardioSpike server, without a trailing slash. http:// on a trusted local network;
// for https:// also set CARDIOSPIKE_SERVER_ROOT_CA below.
#define CARDIOSPIKE_SERVER_URL "http://192.168.1.10:8000"

// The device token the admin site showed once ("Issue a new token"); it starts with csd_.
#define CARDIOSPIKE_DEVICE_TOKEN "csd_paste-the-token-here"

/* Only for https://: the PEM of the root certificate that signed the server's certificate.
#define CARDIOSPIKE_SERVER_ROOT_CA \
  "-----BEGIN CERTIFICATE-----\n" \
  "...\n" \
  "-----END CERTIFICATE-----\n"
*/
