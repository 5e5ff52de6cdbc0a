//! [`FloeClient`]'s consumer-group operations (`/v1/groups/…`).

use reqwest::Method;

use super::{ClientError, FloeClient, GroupRecordsOptions, check, json, push_read_limits};
use floe_api::{
    CommitRequest, CommitResponse, GroupDescription, GroupList, GroupOffsetsResponse,
    GroupRecordsResponse, HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse,
    ResetOffsetsRequest,
};

impl FloeClient {
    pub async fn list_groups(&self) -> Result<GroupList, ClientError> {
        json(self.request(Method::GET, "/v1/groups").send().await?).await
    }

    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let path = group_path(group, &[])?;
        json(self.request(Method::GET, &path).send().await?).await
    }

    /// Deletes a group without members, with its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let path = group_path(group, &[])?;
        let response = self.request(Method::DELETE, &path).send().await?;
        check(response).await.map(|_| ())
    }

    /// The group's committed offsets, high watermarks and lag.
    pub async fn group_offsets(&self, group: &str) -> Result<GroupOffsetsResponse, ClientError> {
        let path = group_path(group, &["offsets"])?;
        json(self.request(Method::GET, &path).send().await?).await
    }

    /// Commits offsets: as a member (`member_id` and `member_epoch`), or without either to
    /// a group that has no members.
    pub async fn commit_offsets(
        &self,
        group: &str,
        request: &CommitRequest,
    ) -> Result<CommitResponse, ClientError> {
        let path = group_path(group, &["offsets"])?;
        self.post_json(&path, request).await
    }

    /// Moves a topic's committed offsets in a group without members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        request: &ResetOffsetsRequest,
    ) -> Result<GroupOffsetsResponse, ClientError> {
        let path = group_path(group, &["offsets", "reset"])?;
        self.post_json(&path, request).await
    }

    /// Joins a group, or rejoins it under `request.member_id`. [`FloeClient::group_consumer`]
    /// does this and the heartbeats that follow.
    pub async fn join_group_raw(
        &self,
        group: &str,
        request: &JoinRequest,
    ) -> Result<JoinResponse, ClientError> {
        let path = group_path(group, &["members"])?;
        self.post_json(&path, request).await
    }

    pub async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        let path = group_path(group, &["members", member_id, "heartbeat"])?;
        self.post_json(&path, request).await
    }

    /// Leaves a group now, rather than when the session expires.
    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), ClientError> {
        let path = group_path(group, &["members", member_id])?;
        let response = self.request(Method::DELETE, &path).send().await?;
        check(response).await.map(|_| ())
    }

    /// Records of every partition the member owns, from its position on the server.
    pub async fn group_records(
        &self,
        group: &str,
        member_id: &str,
        options: &GroupRecordsOptions,
    ) -> Result<GroupRecordsResponse, ClientError> {
        let mut path = group_path(group, &["members", member_id, "records"])?;
        path.push_str(&format!("?encoding={}", options.encoding.as_str()));
        push_read_limits(
            &mut path,
            options.max_records,
            options.max_bytes,
            options.wait,
        );
        if let Some(ack) = options.ack {
            path.push_str(&format!("&ack={ack}"));
        }
        if let Some(epoch) = options.member_epoch {
            path.push_str(&format!("&member_epoch={epoch}"));
        }
        if options.auto_commit {
            path.push_str("&commit=auto");
        }
        json(self.request(Method::GET, &path).send().await?).await
    }
}

/// `/v1/groups/{group}/{segments…}`, the group and every segment percent-encoded as one
/// path segment (group names may hold spaces, `?`, `%` and any other printable character).
fn group_path(group: &str, segments: &[&str]) -> Result<String, ClientError> {
    if matches!(group, "." | "..") {
        return Err(ClientError::Unaddressable {
            what: "group name",
            name: group.to_owned(),
        });
    }
    // The member id is the only other variable segment; the rest are route words.
    if let Some(step) = segments
        .iter()
        .find(|segment| matches!(**segment, "." | ".."))
    {
        return Err(ClientError::Unaddressable {
            what: "member id",
            name: (*step).to_owned(),
        });
    }
    let mut url = reqwest::Url::parse("http://floe/v1/groups").expect("a fixed, valid URL");
    url.path_segments_mut()
        .expect("an http URL has path segments")
        .push(group)
        .extend(segments);
    Ok(url.path().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_encoded_as_one_path_segment() {
        let path = |group: &str| group_path(group, &["offsets"]).expect("addressable");
        assert_eq!(path("orders"), "/v1/groups/orders/offsets");
        assert_eq!(path("with space"), "/v1/groups/with%20space/offsets");
        assert_eq!(path("a?b#c%d"), "/v1/groups/a%3Fb%23c%25d/offsets");
        assert_eq!(path("ünï"), "/v1/groups/%C3%BCn%C3%AF/offsets");
        assert_eq!(path("a.b"), "/v1/groups/a.b/offsets");
        assert_eq!(path("back\\slash"), "/v1/groups/back%5Cslash/offsets");
        assert_eq!(
            group_path("g", &["members", "m 1", "heartbeat"]).expect("addressable"),
            "/v1/groups/g/members/m%201/heartbeat"
        );
    }

    #[test]
    fn dot_segments_are_refused_rather_than_resolved() {
        for name in [".", ".."] {
            assert!(matches!(
                group_path(name, &[]),
                Err(ClientError::Unaddressable { .. })
            ));
            assert!(matches!(
                group_path("g", &["members", name]),
                Err(ClientError::Unaddressable { .. })
            ));
        }
    }
}
