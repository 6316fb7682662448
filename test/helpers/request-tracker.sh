#!/usr/bin/env bash
# request-tracker.sh — (copied from ../shared/recipes, plus `resume`) run a REAL, throwaway Request Tracker 5 (Debian 12 packages)
# on 127.0.0.1 for automated tests: no web UI steps, no MTA, no dbconfig.
#
#   request-tracker.sh install            # apt-get install RT 5 non-interactively (idempotent, root)
#   request-tracker.sh start [DIR]        # fresh instance in DIR (default: mktemp -d); prints KEY=VALUE lines
#   request-tracker.sh stop DIR           # stop the instance whose pid file is DIR/server.pid
#   request-tracker.sh resume DIR         # start a stopped instance again (same port and database)
#   request-tracker.sh destroy DIR        # stop + rm -rf DIR
#   request-tracker.sh selftest           # fresh instance + webhook sink, exercises REST2, prints 'N passed, N failed'
#
# `start` prints shell-evaluable lines on stdout (also saved to DIR/env):
#   RT_DIR, RT_URL (http://127.0.0.1:PORT), RT_REST2 (…/REST/2.0), RT_USER/RT_PASS (root/password),
#   RT_TOKEN (auth token for 'Authorization: token …'), RT_AGENT_USER/RT_AGENT_PASS, RT_PID, RT_MAILBOX
# so a test can do:   eval "$(request-tracker.sh start)"; …; request-tracker.sh destroy "$RT_DIR"
#
# Knobs (environment):
#   RT_PORT          port to listen on (default: a free port picked by the kernel)
#   RT_WORKERS       Starlet worker processes (default 2; each ~210 MB RSS, mostly shared)
#   RT_WEBHOOK_URL   if set, a global scrip POSTs JSON to it on every Create/Correspond/Comment/Status
#   RT_WEBHOOK_SECRET if set, the POST carries X-RT-Signature: sha256=HMAC_SHA256(secret, body)
#   RT_READY_TIMEOUT seconds to wait for REST2 to answer (default 60)
#   RT_GOLDEN        path of a cached, initialised SQLite db to copy instead of re-running
#                    rt-setup-database (created on first use when set; saves ~3 s per start)
set -euo pipefail

RT_LIBEXEC=/usr/share/request-tracker5/libexec
RT_SETUP=/usr/sbin/rt-setup-database-5

log() { echo "[rt] $*" >&2; }

cmd_install() {
  if [ -x "$RT_LIBEXEC/rt-server" ] && [ -x "$RT_SETUP" ] && dpkg -s starlet >/dev/null 2>&1; then
    log "RT 5 already installed"; return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # No dbconfig-managed database (we make our own SQLite db per instance), no cron jobs.
  debconf-set-selections <<'EOF'
request-tracker5 request-tracker5/dbconfig-install boolean false
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
request-tracker5 request-tracker5/rtname string rt.localtest
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1
request-tracker5 request-tracker5/webpath string
rt5-db-sqlite rt5-db-sqlite/available boolean true
EOF
  # another apt run (a parallel CI job) holds the lock: wait for it rather than fail
  [ "${RT_SKIP_APT_UPDATE:-0}" = 1 ] || apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  # msmtp-mta satisfies "default-mta | mail-transport-agent" without pulling exim4 and
  # without a daemon; RT never calls it here because $MailCommand is a Perl sub (see below).
  # dbconfig-no-thanks makes dbconfig-common a no-op.
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    request-tracker5 rt5-db-sqlite rt5-standalone dbconfig-no-thanks msmtp-mta \
    $(command -v curl >/dev/null || echo curl) >&2
}

port_free() {
  perl -MIO::Socket::INET -e 'IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>$ARGV[0],ReuseAddr=>1) or exit 1' "$1"
}

free_port() {
  perl -MIO::Socket::INET -e 'my $s=IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1",LocalPort=>0,ReuseAddr=>1) or die $!; print $s->sockport'
}

write_config() {   # $1 = dir, $2 = port
  local d=$1 port=$2
  mkdir -p "$d/siteconfig.d" "$d/mail"
  # RT_SITE_CONFIG replaces /etc/request-tracker5/RT_SiteConfig.pm and RT_SITE_CONFIG_DIR
  # replaces BOTH RT_SiteConfig.d dirs, so nothing from /etc leaks in (e.g. Debian's WebPath '/rt').
  cat >"$d/RT_SiteConfig.pm" <<EOF
use utf8;
Set(\$rtname, 'rt.test');
Set(\$Organization, 'rt.test');
Set(\$Timezone, 'UTC');
Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$d/rt.db');
Set(\$WebDomain, '127.0.0.1');
Set(\$WebPort, $port);
Set(\$WebPath, '');
Set(\$WebBaseURL, 'http://127.0.0.1:$port');
Set(\$CorrespondAddress, 'rt@rt.test');
Set(\$CommentAddress, 'rt-comment@rt.test');
Set(\$LogToSTDERR, 'warning');
Set(\$LogToSyslog, undef);
Set(\$LogToFile, undef);
# Outgoing mail: never touch an MTA. Every message RT would send is appended to mail/outgoing.mbox.
Set(\$MailCommand, sub {
    my \$entity = shift;
    open my \$fh, '>>', '$d/mail/outgoing.mbox' or return 0;
    print \$fh "From rt\@rt.test " . scalar(gmtime) . "\n", \$entity->stringify, "\n";
    close \$fh; return 1;
});
# Read by the "Webhook" scrip from initialdata (custom options are fine in RT_SiteConfig).
Set(\$WebhookURL, '${RT_WEBHOOK_URL:-}');
Set(\$WebhookSecret, '${RT_WEBHOOK_SECRET:-}');
1;
EOF
}

write_initialdata() {   # $1 = file
  cat >"$1" <<'EOF'
# Loaded with: rt-setup-database-5 --action insert --datafile THIS_FILE
@Users = (
    { Name => 'agent', EmailAddress => 'agent@rt.test', RealName => 'Test Agent',
      Password => 'agentpass', Privileged => 1 },
);
@ACL = (
    { UserId => 'agent', Right => 'SuperUser' },   # simplest: agent can do anything
    # let unprivileged customers create/reply by mail (REST/1.0/NoAuth/mail-gateway, rt-mailgate)
    { GroupDomain => 'SystemInternal', GroupType => 'Everyone', Right => 'CreateTicket' },
    { GroupDomain => 'SystemInternal', GroupType => 'Everyone', Right => 'ReplyToTicket' },
);
@CustomFields = (
    { Name => 'External ID', Type => 'FreeformSingle', LookupType => 'RT::Queue-RT::Ticket',
      Description => 'ID of the conversation in the external system' },   # no ApplyTo => global
);
@Scrips = (
    {   Description    => 'Webhook: POST JSON on Create/Correspond/Comment/Status',
        Queue          => 0,                  # global
        ScripCondition => 'User Defined',
        ScripAction    => 'User Defined',
        Template       => 'Blank',
        Stage          => 'TransactionCreate',
        CustomIsApplicableCode => q{
            return 0 unless RT->Config->Get('WebhookURL');
            return $self->TransactionObj->Type =~ /^(?:Create|Correspond|Comment|Status)$/ ? 1 : 0;
        },
        CustomPrepareCode => q{ return 1; },
        CustomCommitCode  => q{
            require LWP::UserAgent; require JSON; require Digest::SHA;
            my $url = RT->Config->Get('WebhookURL');
            my $txn = $self->TransactionObj;
            my $t   = $self->TicketObj;
            my %cf;
            my $cfs = $t->CustomFields;
            while ( my $cf = $cfs->Next ) { $cf{ $cf->Name } = $t->FirstCustomFieldValue( $cf->id ); }
            my $attach = $txn->ContentObj;
            my $payload = {
                event       => lc $txn->Type,
                transaction => {
                    id           => $txn->id,
                    type         => $txn->Type,
                    creator      => $txn->CreatorObj->Name,
                    creator_email=> $txn->CreatorObj->EmailAddress,
                    created      => $txn->CreatedObj->W3CDTF( Timezone => 'UTC' ),
                    content      => ( $attach ? $attach->Content : undef ),
                    content_type => ( $attach ? $attach->ContentType : undef ),
                    internal     => ( $txn->Type eq 'Comment' ? JSON::true : JSON::false ),
                    # 'REST' (REST2 API), 'Email' (mail gateway), 'Web' (UI), 'CLI' ...: echo-loop filter
                    interface    => ( $attach ? $attach->GetHeader('X-RT-Interface') : undef ),
                },
                ticket => {
                    id            => $t->id,
                    subject       => $t->Subject,
                    queue         => $t->QueueObj->Name,
                    status        => $t->Status,
                    requestors    => [ $t->Requestors->MemberEmailAddresses ],
                    custom_fields => \%cf,
                },
            };
            my $body = JSON->new->utf8->canonical->encode($payload);
            my @h = ( 'Content-Type' => 'application/json',
                      'X-RT-Event' => $txn->Type, 'X-RT-Transaction-Id' => $txn->id );
            if ( my $secret = RT->Config->Get('WebhookSecret') ) {
                push @h, 'X-RT-Signature' => 'sha256=' . Digest::SHA::hmac_sha256_hex( $body, $secret );
            }
            my $res = LWP::UserAgent->new( timeout => 5, agent => 'RT-Webhook/5' )
                                    ->post( $url, @h, Content => $body );
            RT->Logger->warning( "Webhook POST $url failed: " . $res->status_line ) unless $res->is_success;
            return 1;
        },
    },
);
# Runs last, inside rt-setup-database: mint an auth token for root (REST2 'Authorization: token …').
@Final = (
    sub {
        my $root = RT::User->new( RT->SystemUser ); $root->Load('root');
        my $tok  = RT::AuthToken->new( RT::CurrentUser->new($root) );
        my ( $id, $msg, $authstring ) = $tok->Create( Owner => $root->id, Description => 'tests' );
        die "token: $msg" unless $id;
        my $f = $ENV{RT_TOKEN_FILE} or die 'RT_TOKEN_FILE not set';
        open my $fh, '>', $f or die "$f: $!"; print $fh "$authstring\n"; close $fh;
    },
);
1;
EOF
}

init_db() {   # $1 = dir ; creates $1/rt.db and $1/token
  local d=$1
  write_initialdata "$d/initialdata.pl"
  export RT_TOKEN_FILE="$d/token"
  "$RT_SETUP" --action init --skip-create >>"$d/setup.log" 2>&1 \
    || { log "rt-setup-database init failed:"; tail -20 "$d/setup.log" >&2; return 1; }
  "$RT_SETUP" --action insert --datafile "$d/initialdata.pl" >>"$d/setup.log" 2>&1 \
    || { log "rt-setup-database insert failed:"; tail -20 "$d/setup.log" >&2; return 1; }
  [ -s "$d/token" ] || { log "no token minted"; tail -20 "$d/setup.log" >&2; return 1; }
}

cmd_start() {
  local t0 d port
  t0=$(date +%s.%N)
  [ -x "$RT_LIBEXEC/rt-server" ] || { log "RT not installed; run: $0 install"; return 1; }
  d=${1:-$(mktemp -d /tmp/rt5.XXXXXX)}
  mkdir -p "$d"; d=$(cd "$d" && pwd)
  if [ -s "$d/server.pid" ] && alive "$(cat "$d/server.pid")"; then log "already running in $d"; return 1; fi
  port=${RT_PORT:-$(free_port)}
  port_free "$port" || { log "port $port on 127.0.0.1 is already in use"; return 1; }
  write_config "$d" "$port"
  export RT_SITE_CONFIG="$d/RT_SiteConfig.pm" RT_SITE_CONFIG_DIR="$d/siteconfig.d"

  rm -f "$d/rt.db" "$d/token"
  if [ -n "${RT_GOLDEN:-}" ] && [ -s "$RT_GOLDEN" ] && [ -s "$RT_GOLDEN.token" ]; then
    cp "$RT_GOLDEN" "$d/rt.db"; cp "$RT_GOLDEN.token" "$d/token"
  else
    init_db "$d"
    if [ -n "${RT_GOLDEN:-}" ]; then
      mkdir -p "$(dirname "$RT_GOLDEN")"
      cp "$d/rt.db" "$RT_GOLDEN.tmp.$$" && mv "$RT_GOLDEN.tmp.$$" "$RT_GOLDEN"
      cp "$d/token" "$RT_GOLDEN.token"
    fi
  fi
  local t1; t1=$(date +%s.%N)
  serve "$d" "$port" "$t0" "$t1"
}

# Start the server on an initialised dir and wait until REST2 answers; prints/writes the env lines.
serve() {   # $1 = dir, $2 = port, $3/$4 = timestamps for the log line
  local d=$1 port=$2 t0=$3 t1=$4

  # setsid: own process group (PGID == PID) so `stop` can signal master + workers together.
  setsid "$RT_LIBEXEC/rt-server" --server Starlet --host 127.0.0.1 --port "$port" \
      --max-workers "${RT_WORKERS:-2}" >"$d/server.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$d/server.pid"

  local deadline=$(( $(date +%s) + ${RT_READY_TIMEOUT:-60} )) code=000
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u root:password \
           "http://127.0.0.1:$port/REST/2.0/queues/all" 2>/dev/null || true)
    [ "$code" = 200 ] && alive "$pid" && break
    if ! alive "$pid" || [ "$(date +%s)" -ge "$deadline" ]; then
      log "RT did not come up (last HTTP code $code); server.log:"; tail -30 "$d/server.log" >&2
      cmd_stop "$d" || true; return 1
    fi
    sleep 0.2
  done
  local t2; t2=$(date +%s.%N)
  log "$(perl -e 'printf "up in %.1fs (db %.1fs, server %.1fs) at http://127.0.0.1:%s  dir %s",
                    $ARGV[2]-$ARGV[0], $ARGV[1]-$ARGV[0], $ARGV[2]-$ARGV[1], @ARGV[3,4]' "$t0" "$t1" "$t2" "$port" "$d")"
  cat >"$d/env" <<EOF
RT_DIR=$d
RT_URL=http://127.0.0.1:$port
RT_REST2=http://127.0.0.1:$port/REST/2.0
RT_USER=root
RT_PASS=password
RT_TOKEN=$(cat "$d/token")
RT_AGENT_USER=agent
RT_AGENT_PASS=agentpass
RT_PID=$pid
RT_MAILBOX=$d/mail/outgoing.mbox
EOF
  cat "$d/env"
}

# Process checks read /proc with perl (no procps needed); zombies count as gone.
alive() {   # $1 = pid
  perl -e 'open my $f, "<", "/proc/$ARGV[0]/stat" or exit 1; my $s = <$f>; $s =~ s/^.*\) //s;
           exit(substr($s, 0, 1) eq "Z" ? 1 : 0)' "$1"
}
group_alive() {   # $1 = process group id: true while any live (non-zombie) process is in it
  perl -e 'my $g = shift; for (glob "/proc/[0-9]*/stat") { open my $f, "<", $_ or next; my $s = <$f>;
           $s =~ s/^.*\) //s or next; my @a = split / /, $s; exit 0 if $a[2] == $g && $a[0] ne "Z" } exit 1' "$1"
}

# Start an instance again after `stop DIR`, same port, same database (tests: "RT down, then back").
cmd_resume() {
  local d=${1:?usage: resume DIR} port t0
  t0=$(date +%s.%N)
  d=$(cd "$d" && pwd)
  [ -s "$d/rt.db" ] || { log "no database in $d"; return 1; }
  if [ -s "$d/server.pid" ] && alive "$(cat "$d/server.pid")"; then log "already running in $d"; return 1; fi
  port=$(sed -n 's#^RT_URL=http://127.0.0.1:##p' "$d/env")
  port_free "$port" || { log "port $port on 127.0.0.1 is already in use"; return 1; }
  export RT_SITE_CONFIG="$d/RT_SiteConfig.pm" RT_SITE_CONFIG_DIR="$d/siteconfig.d"
  serve "$d" "$port" "$t0" "$t0"
}

cmd_stop() {
  local d=${1:?usage: stop DIR} pid
  [ -s "$d/server.pid" ] || { log "no $d/server.pid"; return 0; }
  pid=$(cat "$d/server.pid")
  # started with setsid, so PGID == PID: TERM reaches the Starlet master and its workers together
  if group_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do group_alive "$pid" || break; sleep 0.1; done
    group_alive "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || true; }
  fi
  rm -f "$d/server.pid"
  log "stopped pid $pid"
}

cmd_destroy() {
  local d=${1:?usage: destroy DIR}
  cmd_stop "$d"
  case "$d" in /tmp/*|/var/tmp/*) rm -rf -- "$d" ;; *) log "not removing $d (outside /tmp)";; esac
}


# ---------------------------------------------------------------------------------------------
# selftest: start a fresh instance + a webhook sink, exercise REST2 / mail gateway / webhook,
# stop everything, print "N passed, N failed". Needs only what RT itself depends on (perl, curl).
pj() { perl -MJSON::PP -0777 -e 'my $d = JSON::PP->new->decode(scalar <STDIN>); my $v = eval $ARGV[0]; die $@ if $@; print defined $v ? $v : ""' "$1"; }

cmd_selftest() {
  local pass=0 fail=0 hp hookdir hookpid env
  ok()  { pass=$((pass+1)); echo "ok   - $*" >&2; }
  bad() { fail=$((fail+1)); echo "FAIL - $*" >&2; }
  check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
  not() { ! "$@"; }

  hookdir=$(mktemp -d /tmp/rt5-hooks.XXXXXX); hp=$(free_port)
  HOOK_OUT="$hookdir/hooks.tsv" setsid plackup -s HTTP::Server::PSGI --host 127.0.0.1 --port "$hp" -e '
    sub { my $env = shift; $env->{"psgi.input"}->read(my $b, $env->{CONTENT_LENGTH} || 0);
          open my $fh, ">>", $ENV{HOOK_OUT} or die; print $fh ($env->{HTTP_X_RT_SIGNATURE} // ""), "\t", $b, "\n"; close $fh;
          [200, ["Content-Type", "text/plain"], ["ok"]] }' >"$hookdir/sink.log" 2>&1 </dev/null &
  hookpid=$!

  local t_start; t_start=$(date -u '+%Y-%m-%d %H:%M:%S')
  env=$(RT_WEBHOOK_URL="http://127.0.0.1:$hp/rt" RT_WEBHOOK_SECRET=selftest-secret cmd_start "") || { bad "start"; kill -TERM -- "-$hookpid" 2>/dev/null; echo "0 passed, 1 failed"; return 1; }
  eval "$env"; ok "start ($RT_URL)"
  local A="Authorization: token $RT_TOKEN" J='Content-Type: application/json' r tid txn

  r=$(curl -s -H "$A" "$RT_REST2/queues/all"); check "token auth lists queue General" [ "$(echo "$r" | pj '$d->{total}')" = 1 ]
  check "bad token -> 401" [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: token 1-1-bogus' "$RT_REST2/queues/all")" = 401 ]

  r=$(curl -s -X POST -H "$A" -H "$J" "$RT_REST2/ticket" -d '{"Queue":"General","Subject":"Printer on fire","Requestor":"alice@example.com","Content":"Hello, my printer is on fire.","ContentType":"text/plain","CustomFields":{"External ID":"conv-123"}}')
  tid=$(echo "$r" | pj '$d->{id}' || true); check "create ticket (id=$tid)" [ -n "$tid" ]
  r=$(curl -s -H "$A" "$RT_REST2/ticket/$tid")
  check "custom field External ID set on create" [ "$(echo "$r" | pj '(grep { $_->{name} eq "External ID" } @{$d->{CustomFields}})[0]{values}[0]')" = conv-123 ]
  check "requestor set" [ "$(echo "$r" | pj '$d->{Requestor}[0]{id}')" = alice@example.com ]

  txn=$(curl -s -D - -o /dev/null -X POST -u "$RT_AGENT_USER:$RT_AGENT_PASS" -H "$J" "$RT_REST2/ticket/$tid/correspond" \
        -d '{"Content":"Please unplug it.","ContentType":"text/plain"}' | tr -d '\r' | sed -n 's#^Location: .*/transaction/##p' || true)
  check "agent correspond -> Location transaction/$txn" [ -n "$txn" ]
  r=$(curl -s -X POST -H "$A" -H "$J" "$RT_REST2/ticket/$tid/comment" -d '{"Content":"Internal: VIP customer","ContentType":"text/plain"}')
  check "root comment" [ "$(echo "$r" | pj '$d->[0]')" = "Comments added" ]

  r=$(curl -s -H "$A" "$RT_REST2/ticket/$tid/history?per_page=100&fields=Type,Creator")
  check "history has Create,Correspond,Comment" [ "$(echo "$r" | pj 'join ",", grep { /^(Create|Correspond|Comment)$/ } map { $_->{Type} } @{$d->{items}}')" = "Create,Correspond,Comment" ]
  r=$(curl -s -H "$A" "$RT_REST2/transaction/$txn/attachments?fields=ContentType,Content")
  check "correspond content readable (list view = raw text)" [ "$(echo "$r" | pj '$d->{items}[0]{Content}')" = "Please unplug it." ]
  local aid; aid=$(echo "$r" | pj '$d->{items}[0]{id}' || true)
  r=$(curl -s -H "$A" "$RT_REST2/attachment/$aid")
  check "single attachment Content is base64" [ "$(echo "$r" | pj 'require MIME::Base64; MIME::Base64::decode_base64($d->{Content})')" = "Please unplug it." ]
  check "REST-made content carries X-RT-Interface: REST" bash -c '[[ "$1" == *"X-RT-Interface: REST"* ]]' _ "$(echo "$r" | pj '$d->{Headers}')"

  r=$(curl -s -G -H "$A" "$RT_REST2/tickets" --data-urlencode "query=LastUpdated >= '$t_start'" --data-urlencode fields=LastUpdated)
  check "tickets LastUpdated >= start" [ "$(echo "$r" | pj '$d->{total}')" = 1 ]
  r=$(curl -s -G -H "$A" "$RT_REST2/tickets" --data-urlencode "query='CF.{External ID}' = 'conv-123'")
  check "find ticket by CF" [ "$(echo "$r" | pj '$d->{items}[0]{id}')" = "$tid" ]

  printf 'From: Alice <alice@example.com>\nTo: rt@rt.test\nSubject: [rt.test #%s] Re: Printer on fire\nContent-Type: text/plain; charset=utf-8\n\nIt worked, thanks!\n' "$tid" >"$hookdir/in.eml"
  r=$(curl -s -F queue=General -F action=correspond -F "message=<$hookdir/in.eml" "$RT_URL/REST/1.0/NoAuth/mail-gateway")
  check "mail-gateway customer reply accepted" bash -c '[[ "$1" == "ok"* ]]' _ "$r"

  r=$(curl -s -G -H "$A" "$RT_REST2/transactions" --data-urlencode "query=ObjectType = 'RT::Ticket' AND Type = 'Correspond' AND id > $txn" --data-urlencode fields=Creator,ObjectId)
  check "poll: new Correspond since txn $txn is the customer's" [ "$(echo "$r" | pj '$d->{items}[0]{Creator}{id}')" = alice@example.com ]

  sleep 0.3
  check "webhook: create, correspond, comment, correspond" [ "$(cut -f2 "$hookdir/hooks.tsv" 2>/dev/null | perl -MJSON::PP -ne 'my $d = JSON::PP->new->decode($_); push @e, $d->{event} unless $d->{event} eq "status"; END { print join ",", @e }')" = "create,correspond,comment,correspond" ]
  check "webhook interface: REST for API posts, Email for mail gateway" [ "$(cut -f2 "$hookdir/hooks.tsv" 2>/dev/null | perl -MJSON::PP -ne 'my $d = JSON::PP->new->decode($_); push @e, $d->{transaction}{interface} // "-" unless $d->{event} eq "status"; END { print join ",", @e }')" = "REST,REST,REST,Email" ]
  check "webhook signatures valid" perl -MDigest::SHA=hmac_sha256_hex -ne 'chomp; my ($s, $b) = split /\t/, $_, 2; $bad++ if $s ne "sha256=" . hmac_sha256_hex($b, "selftest-secret"); END { exit($bad || !$. ? 1 : 0) }' "$hookdir/hooks.tsv"
  check "outgoing mail captured in mailbox" [ "$(grep -c '^From rt@rt.test ' "$RT_MAILBOX" 2>/dev/null)" -ge 2 ]

  cmd_destroy "$RT_DIR"
  check "server process group gone (no live pid in pgid $RT_PID)" not group_alive "$RT_PID"
  kill -TERM -- "-$hookpid" 2>/dev/null || true; rm -rf "$hookdir"
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ]
}

case "${1:-}" in
  install) cmd_install ;;
  start)   shift; cmd_start "${1:-}" ;;
  stop)    shift; cmd_stop "${1:-}" ;;
  resume)  shift; cmd_resume "${1:-}" ;;
  destroy) shift; cmd_destroy "${1:-}" ;;
  selftest) cmd_selftest ;;
  *) sed -n '2,23p' "$0" >&2; exit 2 ;;
esac
