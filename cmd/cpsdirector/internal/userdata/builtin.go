package userdata

// builtin are cps's own versions of the ConPaaS templates, used when
// neither CONF_DIR nor ConPaaS.tar.gz has one. They set the same shell
// variables and write the same files as ConPaaS's, so the managers and
// agents of ConPaaS.tar.gz find what they expect.
var builtin = map[string]string{
	// The VM's addresses (IP_PUBLIC goes into config.cfg as MY_IP), from
	// the EC2-style metadata service both EC2 and OpenStack serve.
	"scripts/cloud/ec2":       cloudMetadata,
	"scripts/cloud/openstack": cloudMetadata,
	"scripts/cloud/dummy": `#!/bin/bash
# ConPaaS context, cloud part (dummy cloud): the first local address.
PRIVATE_IP=$(hostname -I | awk '{ print $1 }')
IP_PUBLIC=$PRIVATE_IP
`,

	"scripts/manager/manager-setup": `#!/bin/bash
# ConPaaS context, manager setup: certificates in place, ConPaaS.tar.gz
# from the director (verified with its CA), PYTHONPATH for the manager.
DIRECTOR=%DIRECTOR_URL%
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
`,

	"config/manager/default-manager-new.cfg": `[manager]

DEPLOYMENT_NAME = %CONPAAS_DEPLOYMENT_NAME%
USER_ID = %CONPAAS_USER_ID%
APP_ID = %CONPAAS_APP_ID%

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
DEV_TARGET = sdb`,

	"scripts/manager/default-manager-start": `#!/bin/bash
# ConPaaS context, manager start: the application manager, its pid in
# $ROOT_DIR/manager.pid.
[ -f $CPS_HOME/scripts/manager/default-git-deploy-hook ] && . $CPS_HOME/scripts/manager/default-git-deploy-hook

$CPS_HOME/sbin/manager/default-cpsmanager -c $ROOT_DIR/config.cfg 1>$ROOT_DIR/manager.out 2>$ROOT_DIR/manager.err &
manager_pid=$!
echo $manager_pid > $ROOT_DIR/manager.pid`,

	"scripts/agent/agent-setup": `#!/bin/bash
# ConPaaS context, agent setup: as the manager's.
SOURCE=$DIRECTOR/download

ROOT_DIR=/root
CPS_HOME=$ROOT_DIR/ConPaaS

LOG_FILE=/var/log/cpsagent.log
ETC=/etc/cpsagent
CERT_DIR=$ETC/certs
VAR_TMP=/var/tmp/cpsagent
VAR_CACHE=/var/cache/cpsagent
VAR_RUN=/var/run/cpsagent

mkdir -p $VAR_TMP $VAR_CACHE $VAR_RUN $CERT_DIR
mv /tmp/cert.pem /tmp/key.pem /tmp/ca_cert.pem $CERT_DIR/
chmod 600 $CERT_DIR/key.pem

curl -fsS --retry 5 --retry-delay 3 --retry-connrefused --cacert $CERT_DIR/ca_cert.pem -o $ROOT_DIR/ConPaaS.tar.gz $SOURCE/ConPaaS.tar.gz
tar -zxf $ROOT_DIR/ConPaaS.tar.gz -C $ROOT_DIR/
export PYTHONPATH=$CPS_HOME/src/:$CPS_HOME/contrib/
`,

	"config/agent/default-agent.cfg": `[agent]

TYPE = $AGENT_TYPE
USER_ID = $CONPAAS_USER_ID
SERVICE_ID = $CONPAAS_SERVICE_ID
APP_ID = $CONPAAS_APP_ID

MY_IP = $IP_PUBLIC

LOG_FILE = $LOG_FILE
ETC = $ETC
CERT_DIR = $CERT_DIR
VAR_TMP = $VAR_TMP
VAR_CACHE = $VAR_CACHE
VAR_RUN = $VAR_RUN
CONPAAS_HOME = $CPS_HOME

MANAGER_IP = $MANAGER_IP
`,

	"scripts/agent/default-agent-start": `#!/bin/bash
# ConPaaS context, agent start: the agent, its pid in $ROOT_DIR/agent.pid.
$CPS_HOME/sbin/agent/default-cpsagent -c $ROOT_DIR/config.cfg 1>$ROOT_DIR/agent.out 2>$ROOT_DIR/agent.err &
agent_pid=$!
echo $agent_pid > $ROOT_DIR/agent.pid`,
}

const cloudMetadata = `#!/bin/bash
# ConPaaS context, cloud part: the VM's addresses from the metadata service.
meta() { curl -fsS --max-time 5 http://169.254.169.254/latest/meta-data/$1 2>/dev/null; }
IP_PUBLIC=$(meta public-ipv4)
PRIVATE_IP=$(meta local-ipv4)
[ -n "$PRIVATE_IP" ] || PRIVATE_IP=$(hostname -I | awk '{ print $1 }')
[ -n "$IP_PUBLIC" ] || IP_PUBLIC=$PRIVATE_IP
`
