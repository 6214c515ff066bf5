// Copy this file to secrets.h (same folder) and fill it in. secrets.h is in .gitignore: never
// commit a Wi-Fi password or a device token.
#pragma once

// Wi-Fi (2.4 GHz: the ESP32 has no 5 GHz radio)
#define CARDIOSPIKE_WIFI_SSID "your-network"
#define CARDIOSPIKE_WIFI_PASSWORD "your-password"

// The CardioSpike server as the board reaches it, without a trailing slash. http:// on a
// trusted local network; https:// needs CARDIOSPIKE_SERVER_ROOT_CA below (the sketch does not
// compile when the two disagree). The server must list this host in ALLOWED_HOSTS, and daphne
// must listen on an address the board can reach (README.md, "Provisioning a device token").
#define CARDIOSPIKE_SERVER_URL "http://192.168.1.10:8000"

// The device token the admin site showed once ("Issue a new token"); it starts with csd_.
// It ends up unencrypted in the board's flash: whoever holds the board can read it.
#define CARDIOSPIKE_DEVICE_TOKEN "csd_paste-the-token-here"

/* Only for https://: the PEM of the root certificate that signed the server's certificate.
#define CARDIOSPIKE_SERVER_ROOT_CA \
  "-----BEGIN CERTIFICATE-----\n" \
  "...\n" \
  "-----END CERTIFICATE-----\n"
*/
