//! Unit tests of `upstream::dns`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;
use hickory_resolver::net::NoRecords;
use hickory_resolver::proto::op::Query;

fn no_records(code: ResponseCode) -> NetError {
    NetError::from(DnsError::NoRecordsFound(NoRecords::new(Query::new(), code)))
}

fn result(found: Found) -> &'static str {
    match found {
        Found::Addresses(_) => "ok",
        Found::Empty => "empty",
        Found::Error(_) => "error",
    }
}

#[test]
fn nxdomain_and_nodata_are_empty_servfail_refused_and_timeouts_are_errors() {
    assert_eq!(
        result(classify(Err(no_records(ResponseCode::NXDomain)))),
        "empty"
    );
    assert_eq!(
        result(classify(Err(no_records(ResponseCode::NoError)))),
        "empty"
    );
    assert_eq!(
        result(classify(Err(no_records(ResponseCode::ServFail)))),
        "error"
    );
    let refused = NetError::from(DnsError::ResponseCode(ResponseCode::Refused));
    assert_eq!(result(classify(Err(refused))), "error");
    let servfail = NetError::from(DnsError::ResponseCode(ResponseCode::ServFail));
    assert_eq!(result(classify(Err(servfail))), "error");
    assert_eq!(result(classify(Err(NetError::Timeout))), "error");
    assert_eq!(result(classify(Ok(Vec::new()))), "empty");
    let one = vec![IpAddr::from([10, 0, 0, 1])];
    assert_eq!(result(classify(Ok(one))), "ok");
}

#[test]
fn a_failure_keeps_the_last_set_and_nothing_empties_it() {
    let last: Arc<[IpAddr]> = Arc::from([IpAddr::from([10, 0, 0, 1])]);
    let error = Answer::Error("timeout".into());
    assert_eq!(&*error.next_set(Some(&last)), &*last);
    assert!(error.next_set(None).is_empty());
    assert!(Answer::Empty.next_set(Some(&last)).is_empty());
    let new = Answer::Addresses(vec![IpAddr::from([10, 0, 0, 2])]);
    assert_eq!(&*new.next_set(Some(&last)), &[IpAddr::from([10, 0, 0, 2])]);
    assert_eq!(
        [Answer::Empty.result(), error.result(), new.result()],
        ["empty", "error", "ok"]
    );
}

#[test]
fn a_hosts_file_answers_its_names_family_by_family() {
    let hosts = parse_hosts(
        "# comment\n127.0.0.1 localhost Local.Example.\n::1 ip6-localhost localhost\n\
             10.0.0.1 app # the app\nnot-an-address ignored\n10.0.0.2 app\n",
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(hosts["localhost"], [ip("127.0.0.1"), ip("::1")]);
    assert_eq!(hosts["local.example"], [ip("127.0.0.1")]);
    assert_eq!(hosts["app"], [ip("10.0.0.1"), ip("10.0.0.2")]);
    assert!(!hosts.contains_key("ignored"));
}

#[tokio::test]
async fn localhost_resolves_locally_and_invalid_names_to_nothing() {
    let resolver = Resolver::new(None);
    let v4 = resolver.resolve("localhost", DnsFamily::V4Preferred).await;
    assert_eq!(v4, Answer::Addresses(vec![IpAddr::from([127, 0, 0, 1])]));
    // "all": what /etc/hosts lists for localhost, and nothing else.
    let listed = system_hosts().remove("localhost").unwrap_or_default();
    let mut want = listed.clone();
    want.sort_unstable();
    let all = resolver.resolve("localhost", DnsFamily::All).await;
    assert_eq!(all, Answer::Addresses(want));
    let nothing = resolver.resolve("nowhere.invalid", DnsFamily::All).await;
    assert_eq!(nothing, Answer::Empty);
}
