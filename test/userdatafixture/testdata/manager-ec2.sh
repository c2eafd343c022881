#!/bin/bash
# ConPaaS context, cloud part: the VM's addresses from the metadata service.
meta() { curl -fsS --max-time 5 http://169.254.169.254/latest/meta-data/$1 2>/dev/null; }
IP_PUBLIC=$(meta public-ipv4)
PRIVATE_IP=$(meta local-ipv4)
[ -n "$PRIVATE_IP" ] || PRIVATE_IP=$(hostname -I | awk '{ print $1 }')
[ -n "$IP_PUBLIC" ] || IP_PUBLIC=$PRIVATE_IP


cat <<EOF > /tmp/cert.pem
-----BEGIN CERTIFICATE-----
MIIBpDCCAUqgAwIBAgIBAzAKBggqhkjOPQQDAjBHMRAwDgYDVQQKEwdDb25QYWFT
MSYwJAYDVQQLEx1jcHMgdGVzdCBmaXh0dXJlIChub3Qgc2VjcmV0KTELMAkGA1UE
AxMCQ0EwIBcNMjQwMTAxMDAwMDAwWhgPMjEyNDAxMDEwMDAwMDBaMCQxEDAOBgNV
BAoTB0NvblBhYVMxEDAOBgNVBAMTB21hbmFnZXIwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASgXLQXFwuqnX4NCmzxFo+4vgCGD0pykLvPFnRgf9v33VjYRzL82qaj
mEFyQ8f/XduVG5ZrTwS7uRhJc7ozYm3Jo0gwRjAOBgNVHQ8BAf8EBAMCB4AwEwYD
VR0lBAwwCgYIKwYBBQUHAwIwHwYDVR0jBBgwFoAUrcxCI0GPOArdiOsieCEqwywX
ZlcwCgYIKoZIzj0EAwIDSAAwRQIgahUhNJfRRPJipBa2lifHIcciFr4k3aLZXbJS
dtDvkGwCIQD5R0y18s0aY/67plsK76Xv9k7mGE12rnBlUiIVBHB4mA==
-----END CERTIFICATE-----

EOF

cat <<EOF > /tmp/key.pem
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIEre5NeajtOJC36KsdtgbmHAG3AvLo5uvk7ksO1uk1fxoAoGCCqGSM49
AwEHoUQDQgAEoFy0FxcLqp1+DQps8RaPuL4Ahg9KcpC7zxZ0YH/b991Y2Ecy/Nqm
o5hBckPH/13blRuWa08Eu7kYSXO6M2JtyQ==
-----END EC PRIVATE KEY-----

EOF

cat <<EOF > /tmp/ca_cert.pem
-----BEGIN CERTIFICATE-----
MIIBwTCCAWegAwIBAgIBATAKBggqhkjOPQQDAjBHMRAwDgYDVQQKEwdDb25QYWFT
MSYwJAYDVQQLEx1jcHMgdGVzdCBmaXh0dXJlIChub3Qgc2VjcmV0KTELMAkGA1UE
AxMCQ0EwIBcNMjQwMTAxMDAwMDAwWhgPMjEyNDAxMDEwMDAwMDBaMEcxEDAOBgNV
BAoTB0NvblBhYVMxJjAkBgNVBAsTHWNwcyB0ZXN0IGZpeHR1cmUgKG5vdCBzZWNy
ZXQpMQswCQYDVQQDEwJDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJBjL46e
fM7lOgN5s1k4NBJ6r6HWMagtHqtgLRLiezroUuGpPF0d4xMDIFhKL2x5Qql+LP3V
jDZx0x222ssOS3SjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNVHRMBAf8EBTADAQH/
MB0GA1UdDgQWBBStzEIjQY84Ct2I6yJ4ISrDLBdmVzAKBggqhkjOPQQDAgNIADBF
AiAD1GcNdn7AKJ/P+7GSQHyAuZ5LcxpBfo5Wmove9/0nbwIhAIeNetqy594O9gXu
WfzRGDFIZBQ51SeoCqimYPZlOK8Y
-----END CERTIFICATE-----

EOF

#!/bin/bash
# ConPaaS context, manager setup: certificates in place, ConPaaS.tar.gz
# from the director (verified with its CA), PYTHONPATH for the manager.
DIRECTOR=https://192.168.56.10:5555
SOURCE=$DIRECTOR/download
ROOT_DIR=/root
CPS_HOME=$ROOT_DIR/ConPaaS

LOG_FILE=/var/log/cpsmanager.log
ETC=/etc/cpsmanager
CERT_DIR=$ETC/certs
VAR_TMP=/var/tmp/cpsmanager
VAR_CACHE=/var/cache/cpsmanager
VAR_RUN=/var/run/cpsmanager

mkdir -p $VAR_TMP $VAR_CACHE $VAR_RUN $CERT_DIR
mv /tmp/cert.pem /tmp/key.pem /tmp/ca_cert.pem $CERT_DIR/
chmod 600 $CERT_DIR/key.pem

curl -fsS --retry 5 --retry-delay 3 --retry-connrefused --cacert $CERT_DIR/ca_cert.pem -o $ROOT_DIR/ConPaaS.tar.gz $SOURCE/ConPaaS.tar.gz
tar -zxf $ROOT_DIR/ConPaaS.tar.gz -C $ROOT_DIR/
export PYTHONPATH=$CPS_HOME/src/:$CPS_HOME/contrib/


cat <<EOF > $ROOT_DIR/config.cfg
[manager]

DEPLOYMENT_NAME = conpaas
USER_ID = 1
APP_ID = 1

MY_IP = $IP_PUBLIC

DIRECTOR_URL = $DIRECTOR
LOG_FILE = $LOG_FILE
ETC = $ETC
CERT_DIR = $CERT_DIR
VAR_TMP = $VAR_TMP
VAR_CACHE = $VAR_CACHE
VAR_RUN = $VAR_RUN
CODE_REPO = %(VAR_CACHE)s/code_repo
CONPAAS_HOME = $CPS_HOME
DEV_TARGET = sdb
EOF


#!/bin/bash
# ConPaaS context, manager start: the application manager, its pid in
# $ROOT_DIR/manager.pid.
[ -f $CPS_HOME/scripts/manager/default-git-deploy-hook ] && . $CPS_HOME/scripts/manager/default-git-deploy-hook

$CPS_HOME/sbin/manager/default-cpsmanager -c $ROOT_DIR/config.cfg 1>$ROOT_DIR/manager.out 2>$ROOT_DIR/manager.err &
manager_pid=$!
echo $manager_pid > $ROOT_DIR/manager.pid

