#include "core/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <utility>

namespace runnel {
namespace {

TEST(Result, AValueMovesOutOfATemporaryOrAMovedResult) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(*r);  // a move-only value: needs operator* &&
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
  auto make = [] { return Result<std::unique_ptr<int>>(std::make_unique<int>(7)); };
  std::unique_ptr<int> q = *make();
  EXPECT_EQ(*q, 7);
  EXPECT_EQ(*make().value(), 7);
}

TEST(Result, AnErrorKeepsItsStatus) {
  Result<int> r = Status::NotFound("no such thing");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "no such thing");
}

}  // namespace
}  // namespace runnel
